// GCS JSON API emulator for the tests: firebase-tools' storage emulator started without its rules
// runtime (a jar that firebase-tools would download at run time, and that needs Java 21).
// Usage: node gcs_emu.js PORT   (binds 127.0.0.1; no authentication is checked)
// Uses files under firebase-tools/lib: the version is pinned in package.json.
const { StorageEmulator } = require('firebase-tools/lib/emulator/storage/index.js');
const { EmulatorRegistry } = require('firebase-tools/lib/emulator/registry.js');
const port = parseInt(process.argv[2] || '9199', 10);
const emu = new StorageEmulator({
  projectId: 'demo-bench', host: '127.0.0.1', port, rules: undefined, auto_download: false,
});
emu._rulesRuntime.start = async () => {};
emu._rulesRuntime.stop = async () => {};
emu._rulesManager.start = async () => {};
emu._rulesManager.stop = async () => {};
// registered so that the emulator can tell its own host and port (else every request gives 500)
EmulatorRegistry.start(emu)
  .then(() => console.log(`GCS emulator listening on 127.0.0.1:${port}`))
  .catch((e) => { console.error(e); process.exit(1); });
process.on('SIGTERM', () => emu.stop().finally(() => process.exit(0)));
