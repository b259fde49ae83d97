"""HunyuanVideo-Avatar: audio-driven talking avatars on the HunyuanVideo transformer, as an extension
(shared/spec/official_apps.md part B). ``load_avatar_transformer(path)`` loads the official checkpoint
with the extension installed; ``AvatarExtension`` documents the model inputs."""
from .extension import AvatarExtension, avatar_extension
from .loading import load_avatar_transformer

__all__ = ["AvatarExtension", "avatar_extension", "load_avatar_transformer"]
