"""NeonScreen: a Screen whose failed workers are reported by the app (Worker.StateChanged does not bubble)."""

from __future__ import annotations

from textual.screen import Screen
from textual.worker import Worker


class NeonScreen(Screen):
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.on_worker_state_changed(event)
