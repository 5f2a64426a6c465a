"""The async Python SDK (AsyncSandbox) over the same endpoints."""

import asyncio

from e2b import AsyncSandbox


def test_async_sdk_flow():
    async def flow():
        sbx = await AsyncSandbox.create(timeout=300)
        try:
            r = await sbx.commands.run("echo async")
            assert r.stdout == "async\n"
            h = await sbx.commands.run("sleep 0.2; echo bg", background=True)
            assert (await h.wait()).stdout == "bg\n"
            await sbx.files.write("/tmp/async.txt", "a")
            assert await sbx.files.read("/tmp/async.txt") == "a"
            assert "async.txt" in [e.name for e in await sbx.files.list("/tmp")]
        finally:
            await sbx.kill()
        assert not await sbx.is_running()

    asyncio.run(flow())
