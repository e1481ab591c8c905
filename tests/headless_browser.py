"""A real headless Chromium driven over the DevTools protocol through a pipe (``--remote-debugging-pipe``).

No driver, no websocket library: Chromium reads commands from file descriptor 3 and writes replies
and events to descriptor 4, each a JSON message ended by a NUL byte.  Enough of the protocol for the
review page's test: open a file, evaluate JavaScript, press keys, click at an element, reload, set the
download folder, take a screenshot.
"""
from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
import time

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe", "--window-size=1280,900")
KEY_CODES = {"ArrowRight": 39, "ArrowLeft": 37, "ArrowDown": 40, "ArrowUp": 38, "Enter": 13, "Escape": 27}


def find_chromium() -> str | None:
    """Debian's chromium (or another Chromium / Chrome on PATH)."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    pass


class Browser:
    def __init__(self, binary: str, user_data_dir: str, *, timeout: float = 30.0):
        self.timeout = timeout
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire():  # in the child: the protocol's descriptors 3 (commands in) and 4 (replies out)
            commands, replies = os.dup(to_chrome_r), os.dup(from_chrome_w)  # above 4, so neither is overwritten
            os.dup2(commands, 3)  # dup2 makes 3 and 4 inheritable (os.pipe's are not)
            os.dup2(replies, 4)

        self.process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
                                        preexec_fn=wire, close_fds=False, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self._events: queue.Queue = queue.Queue()
        self._lock = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.session = self._attach()

    # ------------------------------------------------------------------------------------- protocol
    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        self._replies[message["id"]] = message
                        self._lock.notify_all()
                else:
                    self._events.put(message)

    def send(self, method: str, params: dict | None = None, *, session: str | None = "page") -> dict:
        """One command; returns its ``result`` (raises :class:`BrowserError` on a protocol error)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session == "page":
            session = self.session
        if session:
            message["sessionId"] = session
        try:
            os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise BrowserError(f"chromium is not running (exit status {self.process.poll()}); {method} not sent") \
                from None
        deadline = time.monotonic() + self.timeout
        with self._lock:
            while self._next_id not in self._replies:
                if not self._lock.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise BrowserError(f"no reply to {method} within {self.timeout} s")
            reply = self._replies.pop(self._next_id)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def _attach(self) -> str:
        targets = self.send("Target.getTargets", session=None)["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        session = self.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True},
                            session=None)["sessionId"]
        self.session = session
        self.send("Page.enable")
        self.send("Runtime.enable")
        return session

    # ---------------------------------------------------------------------------------- conveniences
    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:60]}: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float | None = None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.02)
        raise BrowserError(f"timed out waiting for {expression}")

    def open(self, url: str, *, ready: str = "document.body && document.body.dataset.ready === '1'") -> float:
        """Navigate to ``url`` and wait until ``ready`` is true; returns the seconds it took."""
        start = time.perf_counter()
        self.send("Page.navigate", {"url": url})
        self.wait_for(ready)
        return time.perf_counter() - start

    def reload(self, *, ready: str = "document.body && document.body.dataset.ready === '1'") -> None:
        self.evaluate("document.body.dataset.ready = 'reloading'")
        self.send("Page.reload", {"ignoreCache": True})
        self.wait_for(ready)

    def press(self, key: str) -> None:
        """A real key press (keyDown with its text, keyUp) sent to the focused element."""
        code = KEY_CODES.get(key, ord(key.upper()) if len(key) == 1 else 0)
        down = {"type": "keyDown", "key": key, "windowsVirtualKeyCode": code,
                "code": key if len(key) > 1 else f"Key{key.upper()}"}
        if len(key) == 1:
            down["text"] = key
        elif key == "Enter":
            down["text"] = "\r"
        self.send("Input.dispatchKeyEvent", down)
        self.send("Input.dispatchKeyEvent", {**down, "type": "keyUp", "text": ""})

    def click(self, selector: str) -> None:
        """A real mouse click at the centre of the first element matching ``selector``."""
        box = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                            "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
                            "return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                   "clickCount": 1})

    def allow_downloads(self, folder: str) -> None:
        self.send("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": folder}, session=None)

    def screenshot(self, path: str, *, width: int = 1280, height: int = 900) -> None:
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False})
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close", session=None)
        except (BrowserError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass


def wait_for_file(path: str, *, timeout: float = 20.0) -> str:
    """Wait until a download has been completed at ``path`` (Chromium writes ``.crdownload`` first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.isfile(path) and not os.path.exists(path + ".crdownload"):
            return path
        time.sleep(0.05)
    raise BrowserError(f"no download at {path} within {timeout} s")
