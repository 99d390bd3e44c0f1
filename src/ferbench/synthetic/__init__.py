"""Procedural face sequences (neutral to apex), written in the real dataset layouts.

This is the embedded default data: with no licensed dataset on disk, every reader, ``prepare``
and the training jobs run on these files. The faces have real structure so that a model has to
learn something: each subject has its own face shape, skin, hair and feature placement (identity
is a nuisance), expressions come from action-unit-like parameters with one profile per basic
emotion (plus a per-subject idiosyncrasy), intensity ramps from neutral at frame 0 to a random
apex at the last frame, and valence/arousal follow the circumplex position of the emotion scaled
by intensity. Pose jitter, lighting, sensor noise and background clutter are added on top.
Landmarks (iBUG-68 order) come from the same geometry that is drawn, through the same pose.

Everything is seeded: the same arguments give byte-identical files. Each layout (and each
subject/sequence inside it) draws from its own ``numpy`` Generator keyed by
``(seed, layout, subject, sequence)``, so writing one layout alone gives the same bytes as
writing it among others.

The parts:

- ``face``: identities, action units per emotion, intensity ramps, valence/arousal;
- ``geometry``: the face's shapes and its 68 landmarks for an identity and AU activations;
- ``scene``: pose, framing, background, light and sensor noise (the nuisance);
- ``render``: drawing a frame or a neutral-to-apex sequence;
- ``layouts``: one writer per real dataset layout (CK+, Oulu-CASIA, AffectNet, AFEW-VA,
  FER-2013) and the atomic write of each under ``out/<layout>``;
- ``config``: SyntheticConfig, LayoutSummary and the seeded random streams.

Python API::

    cfg = SyntheticConfig(subjects=6, frames=5, size=64, seed=0)
    summaries = write_layouts("data/synthetic", cfg)          # {layout: LayoutSummary}
    identity = sample_identity(np.random.default_rng(0))
    seq = render_sequence(identity, "surprise", frames=8, apex=1.0, rng=np.random.default_rng(1))
"""

from __future__ import annotations

from ferbench.synthetic.config import LAYOUTS, LayoutSummary, SyntheticConfig
from ferbench.synthetic.face import (
    AU_NAMES, AU_PROFILES, CIRCUMPLEX, Identity, expression_aus, intensity_ramp, sample_identity,
    valence_arousal)
from ferbench.synthetic.geometry import face_landmarks
from ferbench.synthetic.layouts import main, parse_layouts, write_layout, write_layouts
from ferbench.synthetic.layouts.affectnet import AFFECTNET_CODES, AFFECTNET_HEADER
from ferbench.synthetic.layouts.ckplus import CKPLUS_CODES
from ferbench.synthetic.layouts.fer2013 import FER2013_CODES, FER2013_USAGE, fer2013_usage
from ferbench.synthetic.layouts.oulu import OULU_FOLDERS
from ferbench.synthetic.render import RenderedSequence, render_face, render_sequence
from ferbench.synthetic.scene import Pose, Scene, make_scene

__all__ = [
    "AFFECTNET_CODES", "AFFECTNET_HEADER", "CKPLUS_CODES", "FER2013_CODES", "FER2013_USAGE",
    "OULU_FOLDERS", "AU_NAMES", "AU_PROFILES", "CIRCUMPLEX", "LAYOUTS", "Identity",
    "LayoutSummary", "Pose", "RenderedSequence", "Scene", "SyntheticConfig", "expression_aus",
    "face_landmarks", "fer2013_usage", "intensity_ramp", "make_scene", "main", "parse_layouts",
    "render_face", "render_sequence", "sample_identity", "valence_arousal", "write_layout",
    "write_layouts",
]
