"""Cancel a running prompt the way a user does: POST /interrupt once its first sampling step shows."""
import threading


def cancel_after_first_step(interrupt, total_steps: int):
    """(on_event for ``queue_prompt``, the list of step numbers seen): /interrupt goes out, from
    another thread, when the first progress event of a ``total_steps``-step bar arrives."""
    steps_seen = []

    def on_event(kind, data):
        if kind == "progress" and data.get("max") == total_steps:
            steps_seen.append(data["value"])
            if len(steps_seen) == 1:
                threading.Thread(target=interrupt).start()
    return on_event, steps_seen
