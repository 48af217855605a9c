"""A direct transcription of the REALY reference evaluation (czh-98/REALY: utils/util.py fit_icp_RT,
utils/rICP.py region_icp_one_region, utils/eval.py bidirectional_evaluation_pipeline,
utils/NICP.py nICP_with_keypoints / nICP_without_keypoints), written independently of
mvrecon.evaluate so the tests can check that mvrecon's implementation agrees with it.

Differences kept to the minimum needed to run here:
- ``trimesh.nearest.on_surface`` (needs rtree) is replaced by a brute-force closest point on a
  triangle (Ericson, Real-Time Collision Detection 5.1.5) over the 32 triangles with the nearest
  centroids;
- CHOLMOD's ``cholesky_AAt`` is replaced by SuperLU on ``A^T A`` (the same normal equations);
- lengths are divided by ``UNIT`` (REALY's ~8.9 mm scan unit) so the weights mean what they mean
  in REALY; errors are returned in mm.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import scipy.spatial

UNIT = 0.0089  # metres per REALY unit


def closest_point_on_triangles(p, a, b, c):
    """Closest points (Q, 3) on triangles (Q, 3) x3 for points p (Q, 3)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    denom = va + vb + vc
    denom = np.where(np.abs(denom) < 1e-300, 1e-300, denom)
    v = vb / denom
    w = vc / denom
    out = a + ab * v[..., None] + ac * w[..., None]  # inside the face
    # edge regions
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ab = d1 / (d1 - d3)
        t_ac = d2 / (d2 - d6)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    m = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    out = np.where(m[..., None], a + t_ab[..., None] * ab, out)
    m = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    out = np.where(m[..., None], a + t_ac[..., None] * ac, out)
    m = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
    out = np.where(m[..., None], b + t_bc[..., None] * (c - b), out)
    # vertex regions
    out = np.where(((d1 <= 0) & (d2 <= 0))[..., None], a, out)
    out = np.where(((d3 >= 0) & (d4 <= d3))[..., None], b, out)
    out = np.where(((d6 >= 0) & (d5 <= d6))[..., None], c, out)
    return out


class Surface:
    """trimesh.nearest.on_surface stand-in."""

    def __init__(self, vertices, faces, k=32):
        self.v = np.asarray(vertices, np.float64)
        self.f = np.asarray(faces, np.int64)
        self.tree = scipy.spatial.cKDTree(self.v[self.f].mean(1))
        self.k = min(k, len(self.f))

    def on_surface(self, points):
        points = np.asarray(points, np.float64)
        _, cand = self.tree.query(points, self.k)
        tri = self.v[self.f[cand]]  # (Q, k, 3, 3)
        q = np.repeat(points[:, None], self.k, 1)
        cp = closest_point_on_triangles(q, tri[:, :, 0], tri[:, :, 1], tri[:, :, 2])
        d = np.linalg.norm(cp - q, axis=-1)
        best = d.argmin(1)
        return cp[np.arange(len(points)), best]


def fit_icp_RT(source, target, with_scale=True):
    """REALY utils/util.py fit_icp_RT (3 x n inputs)."""
    npoint = source.shape[1]
    means = np.mean(source, 1)
    meant = np.mean(target, 1)
    s1 = source - np.tile(means, (npoint, 1)).transpose()
    t1 = target - np.tile(meant, (npoint, 1)).transpose()
    W = t1.dot(s1.transpose())
    U, sig, V = np.linalg.svd(W)
    rotation = U.dot(V)
    scale = np.sum(np.sum(abs(t1))) / np.sum(np.sum(abs(rotation.dot(s1)))) if with_scale else 1.0
    translation = np.mean(target - scale * rotation.dot(source), 1)
    return scale, rotation, translation


def gicp(pred_vertices, pred_kp68, scan_kp68, seven=(36, 39, 42, 45, 33, 48, 54)):
    """REALY utils/gICP.py: similarity of the prediction onto the scan on 7 keypoints."""
    k = list(seven)
    s, R, t = fit_icp_RT(pred_kp68[k].T, scan_kp68[k].T, with_scale=True)
    return pred_vertices * s @ R.T + t, pred_kp68 * s @ R.T + t


def region_icp_one_region(pred_v, pred_f, scan_region_v, pred_kp, scan_kp, region, max_iteration=100):
    """REALY utils/rICP.py region_icp_one_region (in REALY units); returns the moved prediction
    vertices and keypoints."""
    error_pre = 0.0
    cur_iter = 0
    rate = scan_region_v.shape[0] / scan_kp.shape[0]
    if region == "cheek":
        rate = rate / 4
    pred_kp_corr = np.vstack([pred_kp] * int(rate))
    scan_kp_corr = np.vstack([scan_kp] * int(rate))
    pred_kp_all = pred_kp.copy()
    while True:
        corr = Surface(pred_v, pred_f).on_surface(scan_region_v)
        corr = np.vstack((corr, pred_kp_corr))
        gt = np.vstack((scan_region_v, scan_kp_corr))
        _, R, t = fit_icp_RT(corr.T, gt.T, with_scale=False)
        aligned = corr @ R.T + t
        error = np.sum((aligned - gt) ** 2, axis=1).mean()
        if abs(error - error_pre) < 1e-6 or cur_iter >= max_iteration:
            break
        cur_iter += 1
        error_pre = error
        pred_v = pred_v @ R.T + t
        pred_kp_corr = pred_kp_corr @ R.T + t
        pred_kp_all = pred_kp_all @ R.T + t
    return pred_v, pred_kp_all


def _edge_vertex_matrix(tri):
    e = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [0, 2]], tri[:, [1, 2]]]), 1)
    e = np.unique(e, axis=0)
    E = len(e)
    i = np.concatenate([np.arange(E)] * 2)
    j = np.concatenate([e[:, 0], e[:, 1]])
    data = np.concatenate([np.ones(E), -np.ones(E)])
    return scipy.sparse.csc_matrix((data, (i, j)), shape=(E, tri.max() + 1))


def _D(cur):
    n = len(cur)
    vh = np.concatenate([cur, np.ones((n, 1))], 1)
    return scipy.sparse.csc_matrix((vh.ravel(), (np.repeat(np.arange(n), 4), np.arange(4 * n))), shape=(n, 4 * n))


def _spsolve(A, B):
    AtA = (A.T @ A).tocsc()
    return scipy.sparse.linalg.splu(AtA).solve(np.asarray((A.T @ B).todense() if scipy.sparse.issparse(B) else A.T @ B))


def nicp(ver_src, ver_dst, tri_src, kp_idx=None, kp_tgt=None, epsilon=1.0, gamma=1.0, alpha=50.0,
         kp_w1=50.0, alpha2=150.0, max_steps_no_kp=10):  # fmt: skip
    """REALY utils/NICP.py, rows as (n, 3) arrays. ``max_steps_no_kp`` caps the keypoint-free
    stages (REALY has no cap there; a cap keeps a non-converging test from hanging)."""
    n = len(ver_src)
    M = _edge_vertex_matrix(tri_src)
    # REALY also regularises nothing; a region island without data rows would be singular, the
    # test meshes have none
    G = scipy.sparse.diags([1.0, 1.0, 1.0, gamma])
    G_KP = scipy.sparse.diags([2.0, 2.0, 3.0, gamma * 2])
    A1 = scipy.sparse.kron(M, G)
    A1_KP = scipy.sparse.kron(M, G_KP)
    B1 = np.zeros((A1.shape[0], 3))
    tree = scipy.spatial.cKDTree(ver_dst)
    cur = ver_src.copy()
    cur_X = np.zeros((4 * n, 3))
    X = np.ones((4 * n, 3))
    with_kp = kp_idx is not None and len(kp_idx) > 0
    if not with_kp:
        for decay in range(3):
            cur_alpha = alpha * np.exp(-0.5 * decay)
            eps = epsilon * pow(0.5, decay)
            step = 0
            while np.linalg.norm(X - cur_X) > eps and step <= max_steps_no_kp:
                cur_X = X.copy()
                d, idx = tree.query(cur)
                w = (d < max(np.mean(d) * 2, 1)).astype(np.float64)
                D = _D(cur)
                A = scipy.sparse.vstack([A1 * cur_alpha, scipy.sparse.diags(w) @ D]).tocsc()
                B = np.vstack([B1, ver_dst[idx] * w[:, None]])
                X = _spsolve(A, B)
                cur = D @ X
                step += 1
        return cur
    count = 0
    for decay in range(4):
        cur_alpha = alpha2 if decay == 0 else alpha * np.exp(-0.5 * (decay - 1))
        eps = epsilon * pow(0.5, decay - 1)
        step = 0
        while True:
            if np.linalg.norm(X - cur_X) <= eps or step > 10:
                break
            cur_X = X.copy()
            d, idx = tree.query(cur)
            D = _D(cur)
            w = (d < max(np.mean(d) * 2, 1)).astype(np.float64)
            kpw = np.zeros(n)
            kpw[kp_idx] = kp_w1 if decay == 0 else kp_w1 * np.exp(-0.9 * count) / 10.0
            tgt_kp_full = ver_dst[idx].copy()
            tgt_kp_full[kp_idx] = kp_tgt
            A3 = scipy.sparse.diags(kpw) @ D
            B3 = tgt_kp_full * kpw[:, None]
            if decay == 0:
                A = scipy.sparse.vstack([A1_KP * cur_alpha, A3]).tocsc()
                B = np.vstack([B1, B3])
            else:
                A = scipy.sparse.vstack([A1 * cur_alpha, scipy.sparse.diags(w) @ D, A3]).tocsc()
                B = np.vstack([B1, ver_dst[idx] * w[:, None], B3])
            X = _spsolve(A, B)
            cur = D @ X
            step += 1
            count += 1
            if decay == 0:
                break
    return cur


KP_RIGID = {
    "forehead": [36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26],
    "mouth": [48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 64],
    "nose": [27, 28, 29, 30, 31, 35, 32, 33, 34],
    "cheek": [48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 64, 36, 41, 40, 39, 42, 47, 46, 45, 7, 8, 9],
}
KP_NICP = {
    "forehead": KP_RIGID["forehead"],
    "mouth": KP_RIGID["mouth"],
    "nose": [27, 28, 29, 30, 31, 32, 33, 34, 35],
    "cheek": None,
}


def realy_reference(pred_v, pred_f, pred_kp68, scan_kp68, scan_regions):
    """REALY errors (mm) per region. Inputs in metres; ``scan_regions`` maps a region name to
    (vertices (n, 3), triangles (m, 3)) cut from the scan."""
    pv, pkp = gicp(pred_v / UNIT, pred_kp68 / UNIT, scan_kp68 / UNIT)
    skp = scan_kp68 / UNIT
    out = {}
    for region, (rv, rf) in scan_regions.items():
        rv = rv / UNIT
        pv_r, pkp_r = region_icp_one_region(pv, pred_f, rv, pkp[KP_RIGID[region]], skp[KP_RIGID[region]], region)
        # the aligned prediction's keypoints: REALY recomputes them from the moved mesh
        pkp_all = pkp.copy()
        s, R, t = fit_icp_RT(pv.T, pv_r.T, with_scale=False)
        pkp_all = pkp_all @ R.T + t
        surf = Surface(pv_r, pred_f)
        corr = surf.on_surface(rv)
        if KP_NICP[region] is None:
            deformed = nicp(rv, corr, rf)
        else:
            kp_idx = scipy.spatial.cKDTree(rv).query(skp[KP_NICP[region]])[1]
            deformed = nicp(rv, corr, rf, kp_idx, pkp_all[KP_NICP[region]])
        corr2 = surf.on_surface(deformed)
        out[region] = float(np.sqrt(np.sum((corr2 - rv) ** 2, axis=-1)).mean() * UNIT * 1e3)
    return out
