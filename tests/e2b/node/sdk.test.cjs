// The unmodified E2B JS SDK against bhatti's E2B facade (run by crates/cli/tests/e2b with
// E2B_API_KEY, E2B_API_URL, E2B_SANDBOX_URL and NODE_PATH set).
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { Sandbox, CommandExitError } = require('e2b')

test('create, run, files, list, kill', async () => {
  const sbx = await Sandbox.create({ metadata: { suite: 'node' }, timeoutMs: 300_000 })
  try {
    const r = await sbx.commands.run('echo hello; echo oops >&2; pwd')
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'hello\n/home/user\n')
    assert.equal(r.stderr, 'oops\n')

    await assert.rejects(sbx.commands.run('exit 4'), (e) => e instanceof CommandExitError && e.exitCode === 4)

    const bg = await sbx.commands.run('sleep 0.3; echo later', { background: true })
    assert.ok(bg.pid > 0)
    assert.equal((await bg.wait()).stdout, 'later\n')

    await sbx.files.write('/tmp/node.txt', 'from node')
    assert.equal(await sbx.files.read('/tmp/node.txt'), 'from node')
    const bytes = new Uint8Array([0, 1, 2, 250, 255])
    await sbx.files.write('/tmp/node.bin', bytes.buffer)
    assert.deepEqual(Array.from(await sbx.files.read('/tmp/node.bin', { format: 'bytes' })), Array.from(bytes))
    const names = (await sbx.files.list('/tmp')).map((e) => e.name)
    assert.ok(names.includes('node.txt'))
    assert.equal(await sbx.files.exists('/tmp/nope'), false)

    const listed = await Sandbox.list({ query: { metadata: { suite: 'node' } } }).nextItems()
    assert.deepEqual(listed.map((s) => s.sandboxId), [sbx.sandboxId])
  } finally {
    await sbx.kill()
  }
  assert.equal(await sbx.isRunning(), false)
})
