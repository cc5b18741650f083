"""Bach chorales as 88-key piano rolls, from the corpus the ``music21`` package ships (optional extra).

``pip install vaezoo[music]`` installs ``music21``, whose wheel carries the Bach chorales as
MusicXML files, so nothing is downloaded. Each chorale becomes a binary ``(L, 88)`` piano roll:
keys A0 (MIDI 21) to C8 (MIDI 108), sampled once per quarter note (a key is on at step t when a
note of that pitch sounds at quarter-note time t), as in the JSB Chorales set of
Boulanger-Lewandowski et al. (2012). The rolls are prepared once and cached under the data cache
(:func:`vaezoo.data.cache_dir` ``/prepared``), never in the repository.

Split: *not* the published JSB split (its file list is not in the corpus). Every corpus file under
``bach/`` that parses into exactly four parts (the SATB chorales) and holds notes is kept; files
are sorted by name and shuffled with a fixed seed, then cut 60/20/20 into train/valid/test (the
JSB proportions, 229/76/77). Numbers on these splits are therefore not comparable digit for digit
with published JSB numbers.

References:
    - Boulanger-Lewandowski, Bengio & Vincent (2012), Modeling Temporal Dependencies in
      High-Dimensional Sequences: Application to Polyphonic Music Generation and Transcription, ICML.
    - Cuthbert & Ariza (2010), music21: A Toolkit for Computer-Aided Musicology and Symbolic Music
      Data, ISMIR.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from vaezoo.data import cache_dir
from vaezoo.errors import DataError
from vaezoo.sequences import pad

LOWEST, KEYS = 21, 88
SPLITS = ("train", "valid", "test")
SEED = 0


def _music21():
    try:
        import music21
    except ImportError:
        raise DataError(
            "the Bach chorales come from the music21 corpus; install it with pip install 'vaezoo[music]' "
            "(or pip install music21)"
        ) from None
    return music21


def piano_roll(score) -> torch.Tensor:
    """A parsed music21 score as a binary ``(L, 88)`` roll, one step per quarter note."""
    end = math.ceil(float(score.highestTime))
    roll = torch.zeros(end, KEYS)
    for n in score.flatten().notes:
        start, stop = float(n.offset), float(n.offset + n.quarterLength)
        steps = range(math.ceil(start), math.ceil(stop))
        for p in n.pitches:
            key = p.midi - LOWEST
            if 0 <= key < KEYS:
                for t in steps:
                    roll[t, key] = 1.0
    return roll


def _prepare(progress: bool) -> dict:
    music21 = _music21()
    paths = sorted(str(p) for p in music21.corpus.getComposer("bach"))
    if not paths:
        raise DataError("this music21 installation has no Bach corpus; reinstall music21 from its wheel")
    rolls, names = [], []
    for i, path in enumerate(paths):
        try:
            score = music21.converter.parse(path)
        except Exception:  # noqa: BLE001 - a corpus file music21 cannot read is skipped, counted below
            continue
        # Four-part (SATB) settings only: the corpus also holds instrumental versions, keyboard works
        # and Roman-numeral analyses, which are not chorales.
        if len(score.parts) != 4:
            continue
        roll = piano_roll(score)
        if roll.sum() > 0:
            rolls.append(roll.to(torch.uint8))
            names.append(Path(path).name)
        if progress and i % 50 == 0:
            print(f"chorales: parsed {i + 1}/{len(paths)}", flush=True)
    order = torch.randperm(len(rolls), generator=torch.Generator().manual_seed(SEED)).tolist()
    n_train, n_valid = round(0.6 * len(rolls)), round(0.2 * len(rolls))
    cuts = {
        "train": order[:n_train],
        "valid": order[n_train : n_train + n_valid],
        "test": order[n_train + n_valid :],
    }
    return {
        "music21": music21.__version__,
        "files": len(paths),
        "splits": {
            s: {"names": [names[i] for i in idx], "rolls": [rolls[i] for i in idx]} for s, idx in cuts.items()
        },
    }


def load_chorales(progress: bool = False) -> dict:
    """All three splits as lists of ``(L, 88)`` uint8 rolls with their file names, parsed once and cached."""
    music21 = _music21()
    path = cache_dir() / "prepared" / f"bach-chorales-satb-88-music21-{music21.__version__}.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    prepared = _prepare(progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(prepared, tmp)
    tmp.replace(path)
    return prepared


def chorales(split: str = "train", length: int | None = None, progress: bool = False) -> torch.Tensor:
    """One split as a NaN-padded ``(N, T, 88)`` float tensor (:mod:`vaezoo.sequences`).

    ``T`` is ``length`` if given, else the longest chorale over *all* splits, so one model
    (whose ``x_shape`` fixes T) serves train, valid and test.
    """
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    prepared = load_chorales(progress)
    if length is None:
        length = max(len(r) for s in SPLITS for r in prepared["splits"][s]["rolls"])
    return pad([r.float() for r in prepared["splits"][split]["rolls"]], length)


__all__ = ["KEYS", "LOWEST", "chorales", "load_chorales", "piano_roll"]
