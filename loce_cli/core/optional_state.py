"""Running state that a checkpoint may lack (a base model's checkpoint has no LOCE state)."""

from __future__ import annotations

from torch import nn


class OptionalState(nn.Module):
    """A module whose buffers are restored from a state dict when present there, and kept as they are (with no
    missing-key report) when the state dict holds none of them. A state dict holding only some of them is
    loaded normally, so the missing ones are reported as usual."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        own = [prefix + name for name, buf in self._buffers.items()
               if buf is not None and name not in self._non_persistent_buffers_set]
        if own and not any(key in state_dict for key in own):
            self.on_state_absent()
            return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        self.on_state_loaded()

    def on_state_absent(self) -> None:
        """Called when a loaded state dict carried none of this module's buffers."""

    def on_state_loaded(self) -> None:
        """Called after this module's buffers were loaded from a state dict."""
