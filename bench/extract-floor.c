// The floor under any extractor of a layer tar on this machine: the file
// syscalls alone, with nothing else in the way. It maps the whole tar
// (MAP_POPULATE: no read calls), makes the directories, then creates every
// regular file the way an extractor restoring owners must (openat O_CREAT|O_EXCL,
// write, fchown, fchmod, futimens, close), on 1 or N threads taking every N-th
// file. No parsing beyond the ustar fields it needs, no checks, no hardlinks,
// symlinks, xattrs or directory times: a lower bound, not a tool.
// bench/tar-goals.ts builds and runs it next to GNU tar and strata (`cc` on the PATH);
// by hand: cc -O2 -pthread -o floor extract-floor.c && ./floor T.tar DIR THREADS
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct { char name[101]; const char *data; size_t size; int mode, uid, gid; long mtime; } File;

static File *files;
static int nfiles, root, nthreads;

static long octal(const char *p, int n) {
  long v = 0;
  for (int i = 0; i < n && p[i]; i++)
    if (p[i] >= '0' && p[i] <= '7') v = v * 8 + (p[i] - '0');
  return v;
}

static void fail(const char *what, const char *name) {
  perror(name ? name : what);
  exit(1);
}

static void *extract(void *arg) {
  for (int i = (int)(long)arg; i < nfiles; i += nthreads) {
    const File *f = &files[i];
    int fd = openat(root, f->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) fail("openat", f->name);
    for (size_t o = 0; o < f->size;) {
      ssize_t n = write(fd, f->data + o, f->size - o);
      if (n <= 0) fail("write", f->name);
      o += n;
    }
    struct timespec ts[2] = { { f->mtime, 0 }, { f->mtime, 0 } };
    if (fchown(fd, f->uid, f->gid) || fchmod(fd, f->mode) || futimens(fd, ts) || close(fd)) fail("finish", f->name);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s TAR DIR THREADS\n", argv[0]);
    return 2;
  }
  nthreads = atoi(argv[3]);
  int tfd = open(argv[1], O_RDONLY);
  struct stat st;
  if (tfd < 0 || fstat(tfd, &st)) fail("open", argv[1]);
  const char *m = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, tfd, 0);
  if (m == MAP_FAILED) fail("mmap", argv[1]);
  root = open(argv[2], O_DIRECTORY | O_RDONLY);
  if (root < 0) fail("open", argv[2]);
  int cap = 1024;
  files = malloc(sizeof(File) * cap);
  for (size_t off = 0; off + 512 <= (size_t)st.st_size;) {
    const char *h = m + off;
    if (!h[0]) break;
    long size = octal(h + 124, 12);
    char type = h[156];
    char name[101];
    snprintf(name, sizeof name, "%.100s", h);
    if (type == '5') {
      if (strcmp(name, "./") && mkdirat(root, name, octal(h + 100, 8))) fail("mkdirat", name);
    } else if (type == '0' || type == 0) {
      if (nfiles == cap) files = realloc(files, sizeof(File) * (cap *= 2));
      File *f = &files[nfiles++];
      strcpy(f->name, name);
      f->data = h + 512;
      f->size = size;
      f->mode = octal(h + 100, 8);
      f->uid = octal(h + 108, 8);
      f->gid = octal(h + 116, 8);
      f->mtime = octal(h + 136, 12);
    }
    off += 512 + ((size + 511) & ~511L);
  }
  pthread_t th[64];
  if (nthreads < 1 || nthreads > 64) return 2;
  for (long t = 0; t < nthreads; t++) pthread_create(&th[t], NULL, extract, (void *)t);
  for (int t = 0; t < nthreads; t++) pthread_join(th[t], NULL);
  return 0;
}
