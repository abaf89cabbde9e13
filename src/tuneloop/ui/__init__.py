"""The web dashboard: server-rendered pages for the work that is clumsy in a terminal.

`create_ui_app(project)` builds it; `serve.app.create_app` mounts it at `/ui`.
"""

from tuneloop.ui.app import MOUNT_PATH, create_ui_app, mount

__all__ = ["MOUNT_PATH", "create_ui_app", "mount"]
