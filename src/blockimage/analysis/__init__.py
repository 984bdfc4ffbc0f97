"""AI metadata of an image: the blind tamper score (forensic signals + trained classifier).

Content tags from an ImageNet CNN are not here yet (see the project's issue on analysis); the
record's ``tags`` stay empty until they are.
"""

from .blind import ModelNotFoundError, blind_tamper_score

__all__ = ["blind_tamper_score", "ModelNotFoundError"]
