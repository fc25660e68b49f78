"""Fits across several devices: the group axis of the data sharded with ``jax.sharding``.

Every likelihood evaluation is per-group work (batched over the group axis) followed by sums
over groups (:mod:`mixedjax.engines.onefactor`). Placing the per-group fields of
:class:`~mixedjax.design.groups.GroupedData` (``ZtZ``, ``ZtX``, ``Zty``: leading axis ``n_groups``)
with ``NamedSharding(mesh, P("groups"))`` and the totals (``XtX``, ``Xty``, ``yty``,
``n_obs``) replicated lets XLA's SPMD partitioner run the unchanged jitted kernels on all
devices: the per-group work stays local and each sum over groups becomes a cross-device
all-reduce of a ``(p+1, p+1)`` matrix and a scalar. Nothing else moves between devices, so
the cost per evaluation is ``O(n_groups / n_devices)`` per device plus one small
all-reduce. The group axis is padded with empty groups to a multiple of the number of
devices (which changes no likelihood).

For several hosts see ``docs/multi_device.md`` (``jax.distributed.initialize`` and
:func:`global_data_from_local`).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mixedjax.design.groups import GroupedData, pad_groups

#: Name of the mesh axis the groups are split over.
GROUP_AXIS = "groups"
PER_GROUP_FIELDS = ("ZtZ", "ZtX", "Zty")


def group_mesh(devices=None) -> Mesh:
    """A 1-D :class:`~jax.sharding.Mesh` over ``devices`` with axis ``"groups"``.

    ``devices`` is a ``Mesh`` (returned as is; it must have a ``"groups"`` axis), a
    sequence of devices, an integer ``k`` (the first ``k`` of ``jax.devices()``), or
    ``None`` (all devices).
    """
    if isinstance(devices, Mesh):
        if GROUP_AXIS not in devices.axis_names:
            raise ValueError(f"devices: the Mesh needs an axis named {GROUP_AXIS!r}")
        return devices
    available = jax.devices()
    if devices is None:
        devices = available
    elif isinstance(devices, int | np.integer):
        if not 1 <= devices <= len(available):
            raise ValueError(f"devices={devices}, but {len(available)} device(s) are available")
        devices = available[: int(devices)]
    elif isinstance(devices, Sequence):
        devices = list(devices)
        if not devices or not all(isinstance(d, jax.Device) for d in devices):
            raise TypeError("devices must be a non-empty sequence of jax.Device objects")
    else:
        raise TypeError(
            f"devices must be a Mesh, a sequence of devices or an int, got {type(devices)}"
        )
    return Mesh(np.asarray(devices), (GROUP_AXIS,))


def data_shardings(mesh: Mesh) -> GroupedData:
    """The :class:`~jax.sharding.NamedSharding` of each field (a ``GroupedData`` of them)."""
    split = NamedSharding(mesh, P(GROUP_AXIS))
    replicated = NamedSharding(mesh, P())
    return GroupedData(
        *[split if f in PER_GROUP_FIELDS else replicated for f in GroupedData._fields]
    )


def shard_groups(data: GroupedData, mesh: Mesh) -> GroupedData:
    """Pad the group axis to a multiple of the mesh size and place ``data`` on the mesh
    (a plain :class:`GroupedData`, whatever subclass came in: the shardings are one)."""
    data = GroupedData(*data)
    n_dev = mesh.shape[GROUP_AXIS]
    n_groups = data.ZtZ.shape[0]
    data = pad_groups(data, -(-n_groups // n_dev) * n_dev)
    return jax.device_put(data, data_shardings(mesh))


def global_data_from_local(local: GroupedData, mesh: Mesh, n_groups_per_process: int):
    """Assemble a global, sharded :class:`GroupedData` from each process's own groups.

    Multi-host use (one call on every process, after ``jax.distributed.initialize``):
    ``local`` holds the cross-products of the groups this process read (padded to
    ``n_groups_per_process`` groups, the same on every process) and this process's partial
    totals ``XtX, Xty, yty, n_obs``. The per-group fields are concatenated across processes
    along the group axis; the totals are summed (one all-reduce inside ``jit``).
    """
    n_proc = jax.process_count()
    n_local = len(mesh.local_devices)
    n_groups_per_process = -(-n_groups_per_process // n_local) * n_local
    local = pad_groups(local, n_groups_per_process)
    shardings = data_shardings(mesh)
    parts = {}
    for f in PER_GROUP_FIELDS:
        value = np.asarray(getattr(local, f))
        global_shape = (n_groups_per_process * n_proc,) + value.shape[1:]
        parts[f] = jax.make_array_from_process_local_data(
            getattr(shardings, f), value, global_shape
        )
    stacked_sharding = NamedSharding(mesh, P(GROUP_AXIS))
    totals = {}
    for f in ("XtX", "Xty", "yty", "n_obs"):
        value = np.asarray(getattr(local, f))[None]
        # Spread this process's partial total over its local devices (zeros on all but one)
        # so that the global (n_devices, ...) array sums to the global total.
        value = np.concatenate([value, np.zeros((n_local - 1,) + value.shape[1:])])
        global_shape = (mesh.shape[GROUP_AXIS],) + value.shape[1:]
        totals[f] = jax.make_array_from_process_local_data(stacked_sharding, value, global_shape)
    summed = _sum_replicated(totals, out_shardings=NamedSharding(mesh, P()))
    return GroupedData(**parts, **summed)


def _sum_replicated(totals: dict, out_shardings):
    return jax.jit(
        lambda t: {k: jnp.sum(v, axis=0) for k, v in t.items()}, out_shardings=out_shardings
    )(totals)
