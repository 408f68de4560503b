// summary.js - the comparison tables of a bench/run: reads the load generator's JSON
// files (and the crypto and SRTP timings) from a run's output folder and writes
// summary.md there, printing it too. Node.js 20, no dependencies.
//
//   node bench/summary.js OUT_DIR [--require-traffic]
//   node bench/summary.js OUT_DIR --half-units TARGET
//
// --half-units prints half of the largest step of TARGET's ramp that was within the
// limits (at least 1): bench/run measures the delay there again, several times
// (TARGET-half.json, whose measurements the summary reports).
//
// With --require-traffic (the smoke run in the test suite) it exits 1 when any
// target's last step relayed no packets, lost more than 0.1% of them, or when a
// target that was asked for has no file.
'use strict';

const fs = require('fs');
const path = require('path');

const LOSS_LIMIT = 0.001;
const DELAY_P99_LIMIT_US = 10000;
// The server's CPU share from which CPU per packet is read: below it, fixed costs
// (timers, wake-ups of a near-idle server) make the per-packet figure meaningless.
const LOADED_SHARE = 0.15;

const outDir = process.argv[2];
const requireTraffic = process.argv.includes('--require-traffic');
const halfUnitsOf = process.argv.includes('--half-units') ? process.argv[process.argv.indexOf('--half-units') + 1] : null;
if (!outDir) {
  console.error('usage: node bench/summary.js OUT_DIR [--require-traffic]');
  process.exit(2);
}

function readJson(name) {
  const file = path.join(outDir, name);
  return fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : null;
}

const fmt = (v, digits = 0) =>
  v === null || v === undefined || !Number.isFinite(v)
    ? '–'
    : v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

// The load generator's rule (a step whose delay p99 was over the limit was measured twice;
// the JSON holds the second measurement).
const ok = (s) =>
  s.loss <= LOSS_LIMIT &&
  !s.legs_silent &&
  s.delay_us.p99 !== null &&
  s.delay_us.p99 <= DELAY_P99_LIMIT_US;

// What a ramp says: the largest step within the limits, CPU per packet under load,
// the delay at about half of that load, and memory per unit.
function analyse(run) {
  const steps = run.steps || [];
  const good = steps.filter(ok);
  const best = good.length ? good[good.length - 1] : null;
  const lastStep = steps[steps.length - 1];
  const limitedBy = !lastStep
    ? 'no steps'
    : lastStep.loadgen_saturated
      ? 'load generator saturated'
      : !ok(lastStep)
        ? lastStep.loss > LOSS_LIMIT
          ? lastStep.loadgen_socket_drops
            ? `loss above 0.1% (${lastStep.loadgen_socket_drops} of it dropped by the load generator's own sockets)`
            : 'loss above 0.1%'
          : 'delay p99 above 10 ms'
        : 'end of the ramp';
  const loaded = steps.filter((s) => s.server_cpu_share >= LOADED_SHARE && ok(s));
  const cpuStep = loaded.length ? loaded[loaded.length - 1] : best;
  const cpuPerPacket = cpuStep ? cpuStep.cpu_us_per_packet : null;
  let half = null;
  if (best) {
    for (const s of good) {
      if (!half || Math.abs(s.relayed_pps - best.relayed_pps / 2) < Math.abs(half.relayed_pps - best.relayed_pps / 2))
        half = s;
    }
  }
  const marginal = steps.filter((s) => s.units >= 10 && Number.isFinite(s.rss_marginal_kib));
  const kibPerUnit = marginal.length ? marginal[marginal.length - 1].rss_marginal_kib : null;
  return {
    run,
    best,
    limitedBy,
    cpuStep,
    cpuPerPacket,
    perCorePps: cpuPerPacket ? 1e6 / cpuPerPacket : null,
    streams: best ? best.units * run.streams_per_unit : null,
    half,
    kibPerUnit,
    lastStep,
  };
}

if (halfUnitsOf) {
  const run = readJson(`${halfUnitsOf}.json`);
  const a = run ? analyse(run) : null;
  process.stdout.write(`${a && a.best ? Math.max(1, Math.floor(a.best.units / 2)) : 1}\n`);
  process.exit(0);
}

const runs = {};
for (const name of ['udp-forward', 'tabib-relay', 'tabib-echo', 'tabib-echo-unsegmented', 'janus-echo']) {
  const run = readJson(`${name}.json`);
  if (run) runs[name] = analyse(run);
}
const crypto = readJson('crypto.json');
const srtp = readJson('srtp_speed.json');

const lines = [];
const p = (s = '') => lines.push(s);

p('## Per target');
p();
p('| target | largest step within limits | relayed packets/s there | stopped by | server CPU per relayed packet | packets/s per core (1/CPU per packet) | delay added p50 / p99 / p99.9 at about half of that load | set-up p50 / p99 | server memory per unit |');
p('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const [name, a] of Object.entries(runs)) {
  const unitWord = name === 'tabib-relay' ? 'consultations' : name === 'udp-forward' ? 'pairs' : 'echo sessions';
  const h = a.half;
  p(
    `| ${a.run.label} | ${a.best ? `${a.best.units} ${unitWord} (${a.streams} legs)` : '–'} | ${fmt(a.best && a.best.relayed_pps)} | ${a.limitedBy} | ${fmt(a.cpuPerPacket, 2)} µs (at ${fmt(a.cpuStep && a.cpuStep.relayed_pps)} packets/s, ${fmt(a.cpuStep && a.cpuStep.server_cpu_share * 100, 0)}% of a core) | ${fmt(a.perCorePps)} | ${h ? `${fmt(h.delay_us.p50)} / ${fmt(h.delay_us.p99)} / ${fmt(h.delay_us.p999)} µs (${h.units} units)` : '–'} | ${a.best && a.best.setup_ms.count ? `${fmt(a.best.setup_ms.p50, 1)} / ${fmt(a.best.setup_ms.p99, 1)} ms` : '–'} | ${fmt(a.kibPerUnit)} KiB |`,
  );
}

const tabib = runs['tabib-echo'];
const janus = runs['janus-echo'];
if (tabib && janus) {
  p();
  p('## Tabib against Janus, the same echo workload');
  p();
  p('| | Tabib | Janus | ratio |');
  p('| --- | --- | --- | --- |');
  p(`| server CPU per relayed packet | ${fmt(tabib.cpuPerPacket, 2)} µs | ${fmt(janus.cpuPerPacket, 2)} µs | Janus / Tabib = ${fmt(janus.cpuPerPacket / tabib.cpuPerPacket, 2)} |`);
  p(`| packets/s per server core | ${fmt(tabib.perCorePps)} | ${fmt(janus.perCorePps)} | ${fmt(tabib.perCorePps / janus.perCorePps, 2)} |`);
  p(`| most legs within limits | ${fmt(tabib.streams)} (${tabib.limitedBy}) | ${fmt(janus.streams)} (${janus.limitedBy}) | ${fmt(tabib.streams / janus.streams, 2)} |`);
  // The same load on both: the largest step both ramps measured within their limits.
  const common = tabib.run.steps.filter(ok).map((s) => s.units).filter((u) => janus.run.steps.some((j) => j.units === u && ok(j)));
  const at = common.length ? common[common.length - 1] : null;
  if (at) {
    const ts = tabib.run.steps.find((s) => s.units === at);
    const js = janus.run.steps.find((s) => s.units === at);
    p(`| delay added p50 / p99 at the same load (${at} sessions, ${fmt(ts.relayed_pps)} packets/s) | ${fmt(ts.delay_us.p50)} / ${fmt(ts.delay_us.p99)} µs | ${fmt(js.delay_us.p50)} / ${fmt(js.delay_us.p99)} µs | |`);
    p(`| server CPU share at that load | ${fmt(ts.server_cpu_share * 100)}% | ${fmt(js.server_cpu_share * 100)}% | |`);
  }
  p(`| delay added p99 at about half load | ${fmt(tabib.half && tabib.half.delay_us.p99)} µs | ${fmt(janus.half && janus.half.delay_us.p99)} µs | |`);
  const plain = runs['tabib-echo-unsegmented'];
  if (plain) {
    p(`| like for like: Tabib unsegmented, CPU per relayed packet | ${fmt(plain.cpuPerPacket, 2)} µs | ${fmt(janus.cpuPerPacket, 2)} µs | Janus / Tabib = ${fmt(janus.cpuPerPacket / plain.cpuPerPacket, 2)} |`);
    p(`| like for like: most legs within limits | ${fmt(plain.streams)} (${plain.limitedBy}) | ${fmt(janus.streams)} | ${fmt(plain.streams / janus.streams, 2)} |`);
  }
  p(`| memory per session | ${fmt(tabib.kibPerUnit)} KiB | ${fmt(janus.kibPerUnit)} KiB | |`);
}

const fwd = runs['udp-forward'];
const relay = runs['tabib-relay'];
if (fwd && (relay || tabib)) {
  p();
  p('## How close to this machine\'s limit');
  p();
  // A relayed packet is decrypted once and encrypted once: two AES-GCM operations of its size.
  let srtpUs = null;
  const gcm = (op) =>
    srtp && srtp.results
      ? (srtp.results.find((r) => r.profile === 'AEAD_AES_128_GCM' && r.payload === 1100 && r.op === op) || {}).ours_ns
      : undefined;
  if (gcm('protect') && gcm('unprotect')) srtpUs = (gcm('protect') + gcm('unprotect')) / 1000;
  else if (crypto && crypto.srtp_gcm_ns) srtpUs = (2 * crypto.srtp_gcm_ns) / 1000;
  const floor = fwd.cpuPerPacket !== null && srtpUs !== null ? fwd.cpuPerPacket + srtpUs : null;
  p('| | CPU per relayed packet |');
  p('| --- | --- |');
  p(`| plain UDP forwarder (no crypto) | ${fmt(fwd.cpuPerPacket, 2)} µs |`);
  p(`| SRTP, one decrypt and one encrypt of a video packet | ${fmt(srtpUs, 2)} µs |`);
  p(`| the floor: forwarder + SRTP | ${fmt(floor, 2)} µs |`);
  if (relay) p(`| Tabib relay | ${fmt(relay.cpuPerPacket, 2)} µs (${fmt(relay.cpuPerPacket / floor, 2)}× the floor) |`);
  if (tabib) p(`| Tabib echo | ${fmt(tabib.cpuPerPacket, 2)} µs (${fmt(tabib.cpuPerPacket / floor, 2)}× the floor) |`);
}

// The delay at half saturation, measured several times (bench/run: TARGET-half.json).
const halves = ['tabib-echo', 'tabib-relay', 'udp-forward']
  .map((name) => ({ name, run: readJson(`${name}-half.json`) }))
  .filter((h) => h.run && h.run.steps && h.run.steps.length);
if (halves.length) {
  p();
  p('## Delay added at half saturation, measured again and again');
  p();
  p('Half of the largest step within the limits of each ramp above (the forwarder at about the packet rate of Tabib echo\'s half), held and measured several times in a row: the hypervisor of this VM stops a vCPU for milliseconds now and then, so one measurement\'s p99 says as much about the machine as about the server.');
  p();
  p('| target | units | relayed packets/s | server CPU | delay p99 of each measurement (µs) | median p99 | loss | steal |');
  p('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const h of halves) {
    const s = h.run.steps[0];
    const p99s = (s.delay_p99_measurements_us || [s.delay_us.p99]).filter((v) => Number.isFinite(v));
    const sorted = [...p99s].sort((x, y) => x - y);
    const median = sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)] : null;
    p(`| ${h.run.label} | ${s.units} | ${fmt(s.relayed_pps)} | ${fmt(s.server_cpu_share * 100)}% | ${p99s.map((v) => fmt(v)).join(', ')} | ${fmt(median)} | ${fmt(s.loss * 100, 3)}% | ${fmt(s.steal_share * 100, 1)}% |`);
  }
}

p();
p('## Every step');
for (const [name, a] of Object.entries(runs)) {
  p();
  p(`### ${a.run.label} (\`${name}\`)`);
  p();
  p('| units | relayed packets/s | Mbit/s | loss | not delivered | delay p50 / p99 / p99.9 (µs) | set-up p50 / p99 (ms) | server CPU | µs per packet | KiB per unit added | load generator CPU | steal |');
  p('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const s of a.run.steps) {
    p(
      `| ${s.units} | ${fmt(s.relayed_pps)} | ${fmt(s.relayed_bps / 1e6, 1)} | ${fmt(s.loss * 100, 3)}% | ${fmt((s.undelivered || 0) * 100, 3)}% | ${fmt(s.delay_us.p50)} / ${fmt(s.delay_us.p99)} / ${fmt(s.delay_us.p999)} | ${fmt(s.setup_ms.p50, 1)} / ${fmt(s.setup_ms.p99, 1)} | ${fmt(s.server_cpu_share * 100, 1)}% | ${fmt(s.cpu_us_per_packet, 2)} | ${fmt(s.rss_marginal_kib)} | ${fmt(s.loadgen_cpu_share * 100)}% | ${fmt(s.steal_share * 100, 1)}% |`,
    );
  }
}

const text = lines.join('\n') + '\n';
fs.writeFileSync(path.join(outDir, 'summary.md'), text);
process.stdout.write(text);

if (requireTraffic) {
  const wanted = (process.env.BENCH_TARGETS || 'udp-forward tabib-relay tabib-echo janus-echo').split(/\s+/).filter(Boolean);
  let failed = false;
  for (const name of wanted) {
    const a = runs[name];
    if (!a || !a.lastStep) {
      console.error(`summary: no result for ${name}`);
      failed = true;
    } else if (!(a.lastStep.relayed_pps > 0) || a.lastStep.loss > LOSS_LIMIT || a.lastStep.legs_silent) {
      console.error(`summary: ${name} relayed ${a.lastStep.relayed_pps} packets/s with loss ${a.lastStep.loss}`);
      failed = true;
    }
  }
  process.exit(failed ? 1 : 0);
}
