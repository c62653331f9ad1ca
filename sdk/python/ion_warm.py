"""Ion warm module helper for Python (3.9+, standard library only).

    from ion_warm import serve

    def main(job_dir):          # or main() without an argument
        ...                     # read in/, write out/ exactly as a cold module does
        return 0                # exit code: 0 succeeds; sys.exit(n) works too

    if __name__ == "__main__":
        serve(main)

Started by Ion as a warm module (ION_CONTROL_FD set, or ION_CONTROL_SOCKET in a warm
container: the unix socket it connects to), serve() loads once and calls
main once per job: the working directory is the job directory and os.environ holds that
job's contract variables (HANDLER_BASE_DIR, ION_EVENT_ID, ...). Started any other way
(a cold module, or by hand in a prepared directory), it calls main once and exits with its
code, so one file runs cold and warm. The protocol is in docs/modules.md, "Warm modules".
"""

import inspect
import json
import os
import queue
import signal
import socket
import sys
import threading
import traceback

PROTOCOL = 1
__all__ = ["serve"]


def serve(fn):
    """Run fn once per job (warm) or once (cold). Never returns."""
    control = os.environ.get("ION_CONTROL_FD")
    path = os.environ.get("ION_CONTROL_SOCKET")
    if not control and not path:
        base = os.environ.get("HANDLER_BASE_DIR") or os.environ.get("ION_BASE_DIR") or os.getcwd()
        sys.exit(_invoke(fn, base))
    if path:  # a warm container: Ion listens on a socket mounted into it
        channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        channel.connect(path)
        _Loop(fn, channel.fileno(), channel).run()
    _Loop(fn, int(control)).run()


def _invoke(fn, job_dir):
    try:
        takes_dir = len(inspect.signature(fn).parameters) > 0
    except (TypeError, ValueError):
        takes_dir = True
    return fn(job_dir) if takes_dir else fn()


def _exit_code(value):
    """The exit code sys.exit(value) would give (printing a message as it would)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return int(value)
    print(value, file=sys.stderr)
    return 1


class _Loop:
    def __init__(self, fn, fd, channel=None):
        self.fn = fn
        self.fd = fd
        self.channel = channel  # the socket object owning fd, kept open
        self.jobs = queue.Queue()
        self.busy = threading.Event()
        self.base_env = dict(os.environ)
        self.home = os.getcwd()

    def run(self):
        threading.Thread(target=self._read, name="ion-warm-control", daemon=True).start()
        self._send({"type": "ready", "protocol": PROTOCOL})
        while True:
            job = self.jobs.get()
            if job is None:  # end of file: Ion asks this process to exit
                sys.exit(0)
            self._run_job(job)

    def _run_job(self, job):
        os.environ.clear()
        os.environ.update(self.base_env)
        os.environ.update(job.get("env") or {})
        self.busy.set()
        error = None
        try:
            os.chdir(job["dir"])
            code = _exit_code(_invoke(self.fn, job["dir"]))
        except SystemExit as exit_:
            code = _exit_code(exit_.code)
        except Exception as err:  # the job fails; the process stays
            traceback.print_exc()
            code, error = 1, "%s: %s" % (type(err).__name__, err)
        self._mark(job["mark"])
        os.chdir(self.home)
        self.busy.clear()
        done = {"type": "done", "id": job["id"], "ok": code == 0, "exitCode": code}
        if error is not None:
            done["error"] = error
        self._send(done)

    def _mark(self, mark):
        """Everything printed so far is this job's log: flush it, then write the end mark."""
        data = ("\x1eion-end:%s\x1e" % mark).encode()
        for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
            try:
                stream.flush()
            except Exception:
                pass
            _write_all(fd, data)

    def _send(self, message):
        _write_all(self.fd, (json.dumps(message) + "\n").encode())

    def _read(self):
        rest = b""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                if line.strip():
                    self.jobs.put(json.loads(line))
        if self.busy.is_set():
            # Ion is gone in the middle of a job: nobody will read the result. Take the
            # whole process group down now rather than finish work for no one.
            if os.getpgrp() == os.getpid():
                os.killpg(os.getpid(), signal.SIGKILL)
            os._exit(1)
        self.jobs.put(None)


def _write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]
