"""The three usage examples of the original service's README, unchanged, against a running
session-manager (http://localhost:8082 as in the README, or SEED_BASE_URL).

The functions below are the README's own code, byte for byte but for the base URL, which the
README hard-codes to localhost:8082; a throwaway server on another port is reached by
rewriting that one string. Run by `scripts/seed_examples.sh`, which starts the server.
Exits non-zero when an example does not do what the README says it does.
"""

import asyncio
import contextlib
import io
import os
import sys
import tempfile

import aiohttp

BASE = os.environ.get("SEED_BASE_URL", "http://localhost:8082")


def readme(url):
    return url.replace("http://localhost:8082", BASE)


# --- README: "Creating a Session" (the working directory is a fresh temp dir) ---
PROJECT = os.path.join(tempfile.mkdtemp(prefix="seed-"), "project")


async def create_session():
    async with aiohttp.ClientSession() as session:
        data = {
            'name': 'My Project Session',
            'working_directory': PROJECT,
            'description': 'Development session for my project',
            'agents': [
                {
                    'agent_type': 'BACKEND',
                    'name': 'backend-services',
                    'enabled': True,
                    'priority': 2
                }
            ]
        }

        async with session.post(readme('http://localhost:8082/api/claude/sessions'), json=data) as resp:
            result = await resp.json()
            if result['success']:
                print(f"Session created: {result['session']['id']}")
                return result['session']['id']


# --- README: "Navigating a Session" ---
async def navigate_session(session_id, new_path):
    async with aiohttp.ClientSession() as session:
        data = {
            'path': new_path,
            'validate_permissions': True,
            'update_git_state': True
        }

        async with session.post(
            readme(f'http://localhost:8082/api/claude/sessions/{session_id}/navigate'),
            json=data
        ) as resp:
            result = await resp.json()
            if result['success']:
                print(f"Navigated to: {new_path}")


# --- README: "Monitoring Session Metrics" ---
async def get_session_metrics(session_id):
    async with aiohttp.ClientSession() as session:
        async with session.get(
            readme(f'http://localhost:8082/api/claude/sessions/{session_id}/metrics?hours=1')
        ) as resp:
            result = await resp.json()
            if result['success']:
                summary = result['summary']
                print(f"Session duration: {summary.get('duration_hours', 0):.2f} hours")
                print(f"Data points: {summary.get('total_data_points', 0)}")


def captured(coroutine):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        value = asyncio.run(coroutine)
    sys.stdout.write(out.getvalue())
    return value, out.getvalue()


def main():
    # Run the example
    session_id, out = captured(create_session())
    assert session_id and out.startswith("Session created: "), out
    target = os.path.join(os.path.dirname(PROJECT), "elsewhere")
    _, out = captured(navigate_session(session_id, target))
    assert out == f"Navigated to: {target}\n", out
    _, out = captured(get_session_metrics(session_id))
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("Session duration: ") \
        and lines[1].startswith("Data points: "), out
    print("seed examples: all three work unchanged")


if __name__ == "__main__":
    main()
