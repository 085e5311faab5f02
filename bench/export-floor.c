// The floor under any exporter of a layer on this machine that keeps what a
// layer tar must keep: the syscalls alone, with nothing else in the way. For
// every entry it makes the calls such an exporter cannot skip: the listing
// (getdents64), fstatat(AT_SYMLINK_NOFOLLOW) and llistxattr (layer tars carry
// xattrs); for a regular file openat(O_NOFOLLOW|O_NONBLOCK), fstat (the name
// may be something else by now), read and close. The output is one 512-byte
// header block per entry (zeros: no encoding) and each body padded to 512,
// written in 1 MiB chunks. On 1 thread, or on 2: a walker thread (listing,
// fstatat, llistxattr) ahead of the thread that opens, reads and writes, the
// split strata's export makes. A lower bound, not a tool.
// bench/tar-goals.ts builds and runs it next to GNU tar and strata (`cc` on the PATH);
// by hand: cc -O2 -pthread -o floor export-floor.c && ./floor DIR OUT THREADS
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

typedef struct { char *rel; off_t size; int regular; } Entry;

static Entry *entries;
// room for the largest tree measured, reserved (not touched) up front: the reader
// indexes it while the walker appends, so it never moves
#define MAX_ENTRIES (1 << 22)
static size_t nentries, published;
static int walking = 1, root, out;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t more = PTHREAD_COND_INITIALIZER;
static char buf[1 << 20];
static size_t pos;

static void fail(const char *what, const char *name) {
  fprintf(stderr, "%s: ", what);
  perror(name);
  exit(1);
}

static void flush(void) {
  for (size_t at = 0; at < pos;) {
    ssize_t n = write(out, buf + at, pos - at);
    if (n <= 0) fail("write", "output");
    at += n;
  }
  pos = 0;
}

static void put_zeros(size_t n) {
  while (n) {
    if (pos == sizeof buf) flush();
    size_t k = n < sizeof buf - pos ? n : sizeof buf - pos;
    memset(buf + pos, 0, k);
    pos += k;
    n -= k;
  }
}

/** Header and body of one entry into the output. */
static void emit(const Entry *e) {
  put_zeros(512);
  if (!e->regular || e->size == 0) return;
  int fd = openat(root, e->rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) fail("open", e->rel);
  for (off_t left = e->size; left > 0;) {
    if (pos == sizeof buf) flush();
    size_t want = (size_t)left < sizeof buf - pos ? (size_t)left : sizeof buf - pos;
    ssize_t n = read(fd, buf + pos, want);
    if (n <= 0) fail("read", e->rel);
    pos += n;
    left -= n;
  }
  close(fd);
  put_zeros((512 - e->size % 512) % 512);
}

static void add(char *rel, const struct stat *st) {
  pthread_mutex_lock(&mu);
  if (nentries == MAX_ENTRIES) fail("walk", "more than 4M entries");
  entries[nentries++] = (Entry){ rel, st->st_size, S_ISREG(st->st_mode) };
  if (nentries - published >= 256) {
    published = nentries;
    pthread_cond_signal(&more);
  }
  pthread_mutex_unlock(&mu);
}

/** Every entry below `rel` (a dir, "" for the root), parents before children, each level in listing order. */
static void walk(const char *rel) {
  int dfd = rel[0] ? openat(root, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : dup(root);
  DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
  if (!d) fail("opendir", rel);
  char **dirs = NULL;
  size_t ndirs = 0;
  for (struct dirent *de; (de = readdir(d));) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    struct stat st;
    if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW)) fail("fstatat", de->d_name);
    char path[4096], names[4096];
    snprintf(path, sizeof path, "%s%s%s", rel, rel[0] ? "/" : "", de->d_name);
    if (llistxattr(path, names, sizeof names) < 0 && errno != ENOTSUP) fail("llistxattr", path);
    add(strdup(path), &st);
    if (S_ISDIR(st.st_mode)) {
      dirs = realloc(dirs, sizeof(char *) * (ndirs + 1));
      dirs[ndirs++] = strdup(path);
    }
  }
  closedir(d);
  for (size_t i = 0; i < ndirs; i++) walk(dirs[i]);
}

static void *walker(void *arg) {
  (void)arg;
  walk("");
  pthread_mutex_lock(&mu);
  published = nentries;
  walking = 0;
  pthread_cond_signal(&more);
  pthread_mutex_unlock(&mu);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s DIR OUT THREADS\n", argv[0]);
    return 2;
  }
  root = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (root < 0 || out < 0) fail("open", root < 0 ? argv[1] : argv[2]);
  entries = malloc(sizeof(Entry) * MAX_ENTRIES);
  if (fchdir(root)) fail("chdir", argv[1]); // llistxattr takes a path: relative to the root, as openat's
  if (atoi(argv[3]) < 2) {
    walker(NULL);
    for (size_t i = 0; i < nentries; i++) emit(&entries[i]);
  } else {
    pthread_t t;
    pthread_create(&t, NULL, walker, NULL);
    for (size_t i = 0;;) {
      pthread_mutex_lock(&mu);
      while (i == published && walking) pthread_cond_wait(&more, &mu);
      size_t upto = published;
      int done = !walking && i == published;
      pthread_mutex_unlock(&mu);
      if (done) break;
      for (; i < upto; i++) emit(&entries[i]);
    }
    pthread_join(t, NULL);
  }
  put_zeros(1024);
  flush();
  return 0;
}
