// ava's config for the in-VM half of the devicemapper conformance run
// (test/conformance/devicemapper.test.ts boots the VM and runs
// `ava --config test/conformance/devicemapper-in-vm.config.mjs --tap` in it).
export default {
  extensions: { ts: 'module' },
  nodeArguments: ['--import=tsx'],
  workerThreads: false,
  files: ['test/conformance/devicemapper-in-vm.ts'],
  timeout: '10m',
  concurrency: 1,
};
