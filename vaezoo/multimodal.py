"""Multimodal data: several observed modalities per datapoint, each present or missing per datapoint.

A multimodal model (:class:`~vaezoo.models.MVAE`) sees a :class:`MultimodalBatch`: one tensor of
values per modality, keyed by the model's observed site names (``"x"``, ``"y"``), and one boolean
presence vector per modality. A batch may mix complete and incomplete datapoints; the values of a
missing modality are placeholders (stored as zeros) that the model masks out of its likelihood and
the guide out of its product of experts.

A whole data set is a :class:`MultimodalDataset` of lazily served sources (an
:class:`~vaezoo.data.ImageData` keeps its dynamic binarization) that hands out batches through
:meth:`MultimodalDataset.take`, the protocol :func:`vaezoo.data.batches` uses for data that build
their own batches. :mod:`vaezoo.multimodal_data` builds the data sets of the MVAE study.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from vaezoo.errors import DataError


def _fill_absent(value: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    if bool(present.all()):
        return value
    if not bool(present.any()):  # a broadcast zero: no copy of a modality no row has
        return value.new_zeros(()).expand_as(value)
    keep = present.reshape(present.shape + (1,) * (value.dim() - 1))
    return torch.where(keep, value, torch.zeros((), dtype=value.dtype, device=value.device))


@dataclass(frozen=True, init=False, eq=False)
class MultimodalBatch:
    """Values and presence masks of ``n`` datapoints, one entry per modality.

    :param values: modality name -> tensor of shape ``(n, *modality_shape)`` (an image ``(n, C, H, W)``,
        a label ``(n,)`` of class indices).
    :param present: modality name -> ``(n,)`` booleans, True where the datapoint has that modality;
        omitted modalities are present everywhere.

    Values of absent rows are replaced by zeros, so every placeholder lies in every likelihood's support.
    ``shape`` is ``(n,)`` and ``device`` that of the values, which is all the objectives and estimators
    read of a batch beside what the model and guide read.
    """

    values: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    memo: dict | None

    def __init__(
        self,
        values: Mapping[str, torch.Tensor],
        present: Mapping[str, torch.Tensor] | None = None,
        memo: dict | None = None,
    ):
        if not isinstance(values, Mapping) or not values:
            raise DataError("MultimodalBatch needs values: a dict of modality name -> tensor, at least one")
        present = dict(present or {})
        unknown = sorted(set(present) - set(values))
        if unknown:
            raise DataError(
                f"presence given for modality(ies) {unknown} without values; valid: {sorted(values)}"
            )
        sizes = {}
        for name, v in values.items():
            if not isinstance(v, torch.Tensor) or v.dim() == 0:
                raise DataError(f"values[{name!r}] must be a tensor with a leading batch dimension")
            sizes[name] = v.shape[0]
        if len(set(sizes.values())) != 1:
            raise DataError(f"every modality needs the same number of rows, got {sizes}")
        n = next(iter(sizes.values()))
        full = {}
        for name, v in values.items():
            p = present.get(name)
            p = (
                torch.ones(n, dtype=torch.bool, device=v.device)
                if p is None
                else torch.as_tensor(p, device=v.device)
            )
            if p.shape != (n,):
                raise DataError(f"present[{name!r}] must have shape ({n},), got {tuple(p.shape)}")
            full[name] = p.bool()
        object.__setattr__(self, "present", full)
        object.__setattr__(self, "memo", memo)
        object.__setattr__(self, "values", {k: _fill_absent(v, full[k]) for k, v in values.items()})

    def __len__(self) -> int:
        return next(iter(self.values.values())).shape[0]

    @property
    def shape(self) -> torch.Size:
        return torch.Size([len(self)])

    @property
    def device(self) -> torch.device:
        return next(iter(self.values.values())).device

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.values)

    def any_present(self) -> torch.Tensor:
        """``(n,)`` booleans: rows with at least one modality."""
        return torch.stack(list(self.present.values())).any(0)

    def take(self, index: torch.Tensor | slice) -> MultimodalBatch:
        """The rows ``index`` (a slice or a tensor of indices) as a batch."""
        if isinstance(index, torch.Tensor):
            index = index.to(self.device)
        return MultimodalBatch(
            {k: v[index] for k, v in self.values.items()}, {k: p[index] for k, p in self.present.items()}
        )

    __getitem__ = take

    def restrict(self, names) -> MultimodalBatch:
        """The same rows with every modality outside ``names`` marked missing (sharing :attr:`memo`)."""
        keep = set(names)
        return MultimodalBatch(
            self.values,
            {k: p if k in keep else torch.zeros_like(p) for k, p in self.present.items()},
            self.memo,
        )

    def with_memo(self) -> MultimodalBatch:
        """The same batch with a fresh :attr:`memo`, which its :meth:`restrict` ed copies share.

        An objective that runs one guide on several modality subsets of a batch within one step
        opens a memo, so a guide may compute each modality's encoder once for all of them (the
        values are the same tensors, and no parameter changes within the step). It lives as long
        as the objective holds the batch; :meth:`take` starts without one.
        """
        return MultimodalBatch(self.values, self.present, {})

    def to(self, device: torch.device | str | None = None) -> MultimodalBatch:
        return MultimodalBatch(
            {k: v.to(device) for k, v in self.values.items()},
            {k: p.to(device) for k, p in self.present.items()},
        )


class MultimodalDataset:
    """A multimodal data set whose sources are served lazily, batch by batch.

    :param sources: modality name -> a tensor ``(n, ...)`` or an indexable data set whose items are
        ``(value, ...)`` tuples and which accepts a tensor of indices (an :class:`~vaezoo.data.ImageData`:
        every batch drawn anew under dynamic binarization).
    :param present: modality name -> ``(n,)`` booleans (default: present everywhere).
    """

    def __init__(self, sources: Mapping[str, object], present: Mapping[str, torch.Tensor] | None = None):
        if not sources:
            raise DataError("MultimodalDataset needs at least one source")
        self.sources = dict(sources)
        sizes = {k: len(s) for k, s in self.sources.items()}
        if len(set(sizes.values())) != 1:
            raise DataError(f"every source needs the same number of rows, got {sizes}")
        n = next(iter(sizes.values()))
        self.present = {k: torch.ones(n, dtype=torch.bool) for k in self.sources}
        for k, p in (present or {}).items():
            if k not in self.sources:
                raise DataError(
                    f"presence given for {k!r}, which has no source; valid: {sorted(self.sources)}"
                )
            self.present[k] = torch.as_tensor(p).bool()

    def __len__(self) -> int:
        return len(self.present[next(iter(self.present))])

    def take(self, index: torch.Tensor) -> MultimodalBatch:
        values = {}
        for k, s in self.sources.items():
            item = s[index]
            values[k] = item[0] if isinstance(item, tuple) else item
        return MultimodalBatch(values, {k: p[index] for k, p in self.present.items()})


__all__ = ["MultimodalBatch", "MultimodalDataset"]
