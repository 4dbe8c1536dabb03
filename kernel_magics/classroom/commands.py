"""Subcommands of the classroom: ``classroom`` (the JupyterHub service), ``publish`` and ``teacher`` (light module).

``classroom``'s flags are the fields of :class:`~.settings.ClassroomSettings`; ``publish``'s the keywords
of :func:`kernel_magics.classroom.client.publish`.
"""

from kernel_magics.argspec import Command, args_from
from kernel_magics.signatures import about, command_from

from .settings import ClassroomSettings

COMMANDS = [
    Command(
        "classroom",
        "serve one base model with every student's adapters as a JupyterHub service (fair turns, training slots)",
        "kernel_magics.classroom.service:classroom",
        args_from(ClassroomSettings),
    ),
    command_from(
        "publish",
        "upload a run's LoRA adapter to the class's service, served as <your hub name>/NAME",
        "kernel_magics.classroom.client:publish",
        {
            "adapter": about("a finished run's folder or an adapter folder", positional=True),
            "name": about("the adapter's name in the class", default_help="the run's name"),
            "url": about("the classroom service", default_help="$KM_CLASSROOM_URL"),
            "token": about("your hub API token", default_help="$JUPYTERHUB_API_TOKEN"),
        },
    ),
    command_from(
        "teacher",
        "the teacher's view of the classroom service: users' requests and tokens, adapters (unload), training slots (stop)",
        "kernel_magics.classroom.teacher:teacher",
        {
            "url": about("the classroom service", default_help="$KM_CLASSROOM_URL"),
            "token": about("your hub API token (a hub admin's or the teacher group's)", default_help="$JUPYTERHUB_API_TOKEN"),
        },
        notebook="kernel_magics.widgets.classroom:show",
    ),
]
