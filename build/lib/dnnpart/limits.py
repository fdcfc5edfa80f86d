"""Declared upper limits on input sizes. Anything larger is refused with one line before any work, so no
input can make the library run out of memory or time in pre-processing."""

MAX_DEVICES = 10_000  # devices in one instance or scenario (all groups together)
MAX_LAYERS = 5_000  # layers (subtasks) per device
MAX_FILE_BYTES = 16 * 1024 * 1024  # instance, scenario and profile files read whole into memory
MAX_MS = 1e12  # any one time (~32 years): beyond it float sums lose the digits a schedule check needs
