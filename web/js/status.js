// Shows whether the server answers its readiness probe: the first thing to
// check when a clinic says "the page does not work".
const out = document.getElementById('server-status');

async function check() {
  try {
    const res = await fetch('/readyz', { cache: 'no-store' });
    const body = await res.json();
    out.textContent = body.ready ? 'ready' : 'starting or degraded';
  } catch (e) {
    out.textContent = 'unreachable';
  }
}

check();
