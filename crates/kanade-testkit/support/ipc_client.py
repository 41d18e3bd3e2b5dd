"""A stand-in for kanade-client in the agent's IPC tests: another process, run as another account.

Usage: ipc_client.py SOCKET [SECONDS]

Connects to the agent's socket, sends every line it reads on stdin as it comes (bytes as they are, so a test can send
anything), and prints every line the agent sends. Ends when the agent closes the connection (printing `<closed>`),
when it resets it (`<reset>`), or when SECONDS pass without a word from the agent (`<quiet>`). A refused connection
prints `<refused: ...>`.
"""

import socket
import sys
import threading

path = sys.argv[1]
quiet_after = float(sys.argv[2]) if len(sys.argv) > 2 else 15.0

conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    conn.connect(path)
except OSError as err:
    print(f"<refused: {err}>", flush=True)
    sys.exit(0)


def send_stdin():
    for line in sys.stdin.buffer:
        try:
            conn.sendall(line)
        except OSError:
            return


threading.Thread(target=send_stdin, daemon=True).start()
conn.settimeout(quiet_after)
pending = b""
try:
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            print("<closed>", flush=True)
            break
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            print(line.decode("utf-8", "replace"), flush=True)
except socket.timeout:
    print("<quiet>", flush=True)
except ConnectionResetError:
    print("<reset>", flush=True)
