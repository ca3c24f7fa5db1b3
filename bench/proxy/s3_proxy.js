// An S3 server as far away as a real object store: every request waits `latency` ms before it is
// forwarded, and every response body leaves at `bandwidth` MB/s (toxy's latency and bandwidth poisons).
// node s3_proxy.js <listen port> <target url> <latency ms> <bandwidth MB/s>; listens on 127.0.0.1 only.
const toxy = require('toxy')

const [port, target, latency, bandwidth] = process.argv.slice(2)
const delay = 1  // ms a tick (node's timers go no finer)
const chunk = Math.round(Number(bandwidth) * 1e3 * delay)  // bytes a tick

const proxy = toxy({ forwardHost: true, timeout: 600000 })
proxy.forward(target)
proxy.all('/*')
proxy.poison(toxy.poisons.latency({ jitter: Number(latency) }))
proxy.poison(toxy.poisons.bandwidth({ bytes: chunk, threshold: delay }))
proxy.listen(Number(port), '127.0.0.1')
console.log(`proxy on 127.0.0.1:${port} -> ${target}: +${latency} ms a request, ${(chunk / delay / 1e3).toFixed(0)} MB/s out`)
