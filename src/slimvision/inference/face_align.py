"""Moved to :mod:`slimvision.data.face_align`, below the trainers, which cut face chips too."""

from slimvision.data.face_align import *  # noqa: F401,F403  (users import align_face / the templates from here)
