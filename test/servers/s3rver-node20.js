// @20minutes/s3rver 5.0.0 ships no bin and declares node >= 24; its CLI runs on Node 20 this way.
require('@20minutes/s3rver/lib/cli.js')
  .parseAsync(process.argv)
  .catch((e) => {
    console.error(e);
    process.exit(1);
  });
