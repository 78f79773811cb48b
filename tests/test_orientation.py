"""Orientation conventions: reduction to the standard triangle, angles, Miller recovery."""

from __future__ import annotations

import math

import numpy as np
import pytest

from matstore.orientation import (
    THETA_MAX_DEG,
    OrientationError,
    broken_bond_g,
    distinct_miller_indices,
    from_angles,
    from_miller,
    from_normal,
    from_normals,
    in_plane_frame,
)


def test_corners_of_the_standard_triangle() -> None:
    assert (from_miller(1, 0, 0).theta_deg, from_miller(1, 0, 0).phi_deg) == (0.0, 0.0)
    o110 = from_miller(1, 1, 0)
    assert o110.theta_deg == pytest.approx(45.0) and o110.phi_deg == pytest.approx(0.0)
    o111 = from_miller(1, 1, 1)
    assert o111.theta_deg == pytest.approx(THETA_MAX_DEG) and o111.phi_deg == pytest.approx(45.0)
    assert THETA_MAX_DEG == pytest.approx(math.degrees(math.acos(1 / math.sqrt(3))))


@pytest.mark.parametrize("variant", [(1, 2, 0), (0, -2, 1), (-2, 0, -1), (4, 2, 0), (0, 1, 2)])
def test_symmetry_equivalents_reduce_to_one_index(variant) -> None:
    assert from_miller(*variant).miller == (2, 1, 0)
    assert from_miller(*variant).key == "hkl:2,1,0"


def test_thirteen_distinct_surfaces_up_to_index_three() -> None:
    indices = distinct_miller_indices(3)
    assert len(indices) == 13
    assert indices[:3] == [(1, 0, 0), (1, 1, 0), (1, 1, 1)]
    assert all(h >= k >= l >= 0 for h, k, l in indices)


def test_normal_and_angles_round_trip_to_miller() -> None:
    assert from_normal([0.0, 2.0, 4.0]).miller == (2, 1, 0)
    o = from_miller(3, 2, 1)
    assert from_angles(o.theta_deg, o.phi_deg).miller == (3, 2, 1)


def test_irrational_orientation_keeps_angles_without_miller() -> None:
    o = from_angles(20.0, 10.0)
    assert o.miller is None
    assert o.theta_deg == pytest.approx(20.0) and o.phi_deg == pytest.approx(10.0)
    assert np.linalg.norm(o.normal) == pytest.approx(1.0)
    assert o.key.startswith("n:")


@pytest.mark.parametrize("bad", [(0, 0, 0)])
def test_zero_index_is_an_error(bad) -> None:
    with pytest.raises(OrientationError):
        from_miller(*bad)


def test_angles_outside_the_triangle_are_an_error() -> None:
    with pytest.raises(OrientationError, match="outside the standard triangle"):
        from_angles(10.0, 60.0)
    with pytest.raises(OrientationError):
        from_normal([math.nan, 0, 1])


def test_broken_bond_factor_orders_low_index_fcc_surfaces() -> None:
    # (2h+k)/|hkl|: (111) 3/√3 = 1.732 < (100) 2 < (110) 3/√2 = 2.121
    g111, g100, g110 = (broken_bond_g(m) for m in [(1, 1, 1), (1, 0, 0), (1, 1, 0)])
    assert g111 == pytest.approx(math.sqrt(3))
    assert g111 < g100 < g110


def test_surface_frame_is_orthonormal() -> None:
    for miller in distinct_miller_indices(3):
        e1, e2, n = in_plane_frame(miller)
        frame = np.vstack([e1, e2, n])
        assert np.allclose(frame @ frame.T, np.eye(3), atol=1e-12)


def test_many_normals_at_once_match_one_by_one() -> None:
    """from_normals (one vectorised rational-index search) equals from_normal row by row:
    the same Miller index for rational normals in any octant and scale, the same reduced
    normal and angles for irrational ones, and it names the first bad row."""
    rng = np.random.default_rng(3)
    rational = rng.integers(-12, 13, size=(200, 3)).astype(float)
    rational = rational[np.abs(rational).sum(axis=1) > 0] * rng.uniform(0.1, 5.0, size=(1, 1))
    irrational = rng.normal(size=(200, 3))
    normals = np.vstack([rational, irrational, [[13.0, 1.0, 0.0]]])  # (13,1,0): past max_miller
    many = from_normals(normals)
    one_by_one = [from_normal(v) for v in normals]
    assert [o.miller for o in many] == [o.miller for o in one_by_one]
    assert all(o.miller is not None for o in many[: len(rational)])
    assert many[-1].miller is None and from_normal([13, 1, 0], max_miller=13).miller == (13, 1, 0)
    np.testing.assert_allclose([o.normal for o in many], [o.normal for o in one_by_one], atol=1e-15)
    np.testing.assert_allclose([o.theta_deg for o in many], [o.theta_deg for o in one_by_one], atol=1e-12)
    assert from_normals(np.array([[0.0, -2.0, 2.0]]))[0].miller == (1, 1, 0)
    with pytest.raises(OrientationError, match=r"row 1"):
        from_normals(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
