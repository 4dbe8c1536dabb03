"""A practice classroom: the classroom service on this machine, in this kernel, with no JupyterHub.

A lab about the classroom must run where there is no hub (a laptop, CI). ``km.practice_classroom(model)``
starts the same service (:func:`~.service.open_classroom`, :func:`~.service.build_app`: the same engine,
adapter checks, fair turns and training slots) on 127.0.0.1, but callers are told apart by tokens it made
itself instead of the hub's: ``student`` (you), a stand-in ``classmate`` and a ``teacher``. It sets
``KM_CLASSROOM_URL`` and ``KM_CLASSROOM_TOKEN`` (the student's) in this kernel, so ``km.publish``, the
training runs' slots and a lab's chat cells find it exactly as they find a class's service on a hub, and
puts the two variables back as they were on ``stop()``.

::

    practice = km.practice_classroom("smollm2")         # only when KM_CLASSROOM_URL is not set
    km.publish(run, name="pirate")                      # served as student/pirate
    km.publish(other, name="poem", token=practice.tokens["classmate"])   # the classmate's turn
    practice.stop()
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

from ..errors import SwiftConfigError
from .auth import Caller
from .settings import ClassroomSettings

STUDENT, CLASSMATE, TEACHER = "student", "classmate", "teacher"
ENVIRONMENT = ("KM_CLASSROOM_URL", "KM_CLASSROOM_TOKEN")


class PracticeIdentity:
    """Stands in for the hub: each token the practice classroom made names one of its three users."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.callers = {token: Caller(user, teacher=user == TEACHER) for user, token in tokens.items()}

    async def identify(self, token: str) -> Caller | None:
        return self.callers.get(token)


@dataclass
class PracticeClassroom:
    """A running practice classroom: where it answers, each user's token; ``stop()`` ends it."""

    url: str
    tokens: dict[str, str]
    room: Any  # the service's Classroom
    folder: str
    _server: Any = None
    _thread: threading.Thread | None = None
    _socket: Any = None
    _saved: dict[str, str | None] = field(default_factory=dict)

    def stop(self) -> None:
        """Stop serving, remove the published adapters, put the environment back."""
        if self._server is None:
            return
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
        self._socket.close()
        self.room.close()
        self._server = None
        shutil.rmtree(self.folder, ignore_errors=True)
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def to_text(self) -> str:
        state = "serving" if self._server is not None else "stopped"
        return (f"practice classroom at {self.url} ({state}, no hub): you are '{STUDENT}', with a stand-in "
                f"'{CLASSMATE}' and a '{TEACHER}'; chat policy {self.room.settings.chat_policy}")  # fmt: skip

    def __repr__(self) -> str:
        return self.to_text()


def practice_classroom(model: str = "smollm2", chat_policy: str = "everyone", port: int = 0, **settings: Any) -> PracticeClassroom:  # fmt: skip
    """Start the classroom service for ``model`` on 127.0.0.1 in this kernel, with practice users instead of a
    hub's (``chat_policy``: whose adapters students may chat with; ``port``: 0 picks a free one; other keywords
    are :class:`ClassroomSettings` fields). Sets ``KM_CLASSROOM_URL`` / ``KM_CLASSROOM_TOKEN`` until ``stop()``."""
    import uvicorn

    from ..serve.ports import bind_socket
    from .service import build_app, open_classroom

    unknown = sorted(set(settings) - (set(ClassroomSettings.__dataclass_fields__) - {"host", "port", "folder"}))
    if unknown:
        raise SwiftConfigError(f"practice_classroom takes no setting {unknown[0]!r}; see python -m kernel_magics classroom --help")
    folder = tempfile.mkdtemp(prefix="km-practice-classroom-")
    arguments = ClassroomSettings(model=model, chat_policy=chat_policy, host="127.0.0.1", port=port, folder=folder, **settings)
    room = None
    try:
        room = open_classroom(arguments)  # checks the settings, loads the model
        sock = bind_socket("127.0.0.1", port)
    except BaseException:
        if room is not None:
            room.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    tokens = {user: secrets.token_hex(16) for user in (STUDENT, CLASSMATE, TEACHER)}
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = build_app(room, PracticeIdentity(tokens))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="km-practice-classroom", daemon=True)
    thread.start()
    saved = {name: os.environ.get(name) for name in ENVIRONMENT}
    os.environ.update({"KM_CLASSROOM_URL": url, "KM_CLASSROOM_TOKEN": tokens[STUDENT]})
    practice = PracticeClassroom(url, tokens, room, folder, server, thread, sock, saved)
    print(practice.to_text())
    return practice
