// Stores strata writes for the migrate proof, of sources dockerd cannot run here (aufs, devicemapper):
// one runnable spec (busybox, so `docker run` works), written by strata's drivers through
// fixtures/modern-store.ts. No ava here: the VM runs this file as a script to write the
// devicemapper store on real dm-thin:
//   node --import=tsx test/oracle/migrate-stores.ts <root>      (in vm/run.sh, root on a share)
import * as fs from 'node:fs';
import * as path from 'node:path';
import { busyboxRootfsEntries } from '../../fixtures/busybox-rootfs.ts';
import { STORE_OPTIONS } from '../../fixtures/devmapper-vm-store.ts';
import type { FixtureEntry } from '../../fixtures/layer-tar.ts';
import { writeModernStore, type StoreSpec } from '../../fixtures/modern-store.ts';

const T = new Date('2024-01-02T03:04:05Z');

/** The busybox rootfs as fixture entries (its one file capability xattr is not carried: FixtureEntry has no pax). */
function busyboxLayer(): FixtureEntry[] {
  return busyboxRootfsEntries().map(({ header: h, body }) => ({
    name: h.name, type: h.type as FixtureEntry['type'], mode: h.mode, uid: h.uid, gid: h.gid, mtime: h.mtime,
    ...(h.linkname ? { linkname: h.linkname } : {}), ...(body ? { content: body } : {}),
  }));
}

/**
 * The sample store's shape as a strata store spec (fixtures/modern-store.ts): a busybox base,
 * a build on it with a new dir, a whiteout and an opaque dir, an untagged build, and a stopped
 * container that adds, appends to and deletes files. Same spec, same ids on every driver.
 */
export function runnableStoreSpec(): StoreSpec {
  return {
    images: [
      { name: 'base', tags: ['strata-base:latest'], layers: [{ createdBy: 'ADD busybox rootfs', entries: busyboxLayer() }], created: '2024-01-02T03:04:05Z' },
      {
        name: 'app', tags: ['strata-app:1', 'strata-app:latest'], from: 'base', created: '2024-01-03T03:04:05Z',
        layers: [
          { createdBy: 'ADD app/ /srv/app/', entries: [{ name: 'srv/', type: 'directory', mtime: T }, { name: 'srv/app/', type: 'directory', mtime: T }, { name: 'srv/app/a.txt', content: 'app a\n', mtime: T }] },
          { createdBy: 'RUN rm /data/delme.txt', entries: [{ name: 'data/', type: 'directory', mtime: T }, { name: 'data/.wh.delme.txt', mtime: T }] },
          {
            createdBy: 'RUN rm -rf /opaq && mkdir /opaq && echo fresh > /opaq/fresh.txt', entries: [
              { name: 'opaq/', type: 'directory', mtime: T }, { name: 'opaq/.wh..wh..opq', mtime: T }, { name: 'opaq/fresh.txt', content: 'fresh\n', mtime: T },
            ],
          },
        ],
      },
      { name: 'untagged', tags: [], from: 'base', created: '2024-01-04T03:04:05Z', layers: [{ createdBy: 'ADD untagged.txt /', entries: [{ name: 'untagged.txt', content: 'built without a tag\n', mtime: T }] }] },
    ],
    containers: [{
      name: 'c1', image: 'app', created: '2024-01-05T03:04:05.000000001Z',
      change: (rootfs) => {
        fs.writeFileSync(path.join(rootfs, 'run-added.txt'), 'run-added\n');
        fs.mkdirSync(path.join(rootfs, 'newdir/sub'), { recursive: true });
        fs.writeFileSync(path.join(rootfs, 'newdir/sub/f.txt'), 'x\n');
        fs.appendFileSync(path.join(rootfs, 'etc/base.txt'), 'appended\n');
        fs.unlinkSync(path.join(rootfs, 'data/keep/k.txt'));
        fs.rmSync(path.join(rootfs, 'srv/app'), { recursive: true });
      },
    }],
  };
}

/** An empty network state, as dockerd 20.10 writes for a `--network none` container that has stopped. */
const STOPPED_NETWORK_SETTINGS = {
  Bridge: '', SandboxID: '', HairpinMode: false, LinkLocalIPv6Address: '', LinkLocalIPv6PrefixLen: 0, Networks: {}, Service: null,
  Ports: null, SandboxKey: '', SecondaryIPAddresses: null, SecondaryIPv6Addresses: null, IsAnonymousEndpoint: false, HasSwarmEndpoint: false,
};

/**
 * writeModernStore, then give each container the NetworkSettings dockerd itself would have written:
 * the fixture leaves it null, and dockerd 20.10 then panics in `docker container inspect` (a nil
 * dereference in its inspect handler; the client hangs). Done the same on every driver's copy.
 */
export async function writeRunnableStore(root: string, driver: string, spec: StoreSpec, driverOptions: string[] = []): Promise<void> {
  const info = await writeModernStore(root, driver, spec, driverOptions);
  for (const c of info.containers.values()) {
    const file = path.join(root, 'containers', c.id, 'config.v2.json');
    const config = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    config.NetworkSettings ??= STOPPED_NETWORK_SETTINGS;
    fs.writeFileSync(file, JSON.stringify(config));
  }
}


if (import.meta.url === `file://${process.argv[1]}`) {
  // in the VM: devicemapper on dm-thin, small sparse pool files (as fixtures/devmapper-vm-store.ts)
  await writeRunnableStore(process.argv[2]!, 'devicemapper', runnableStoreSpec(), STORE_OPTIONS);
}
