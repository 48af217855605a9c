"""Is a rig-frame session's unaligned error the fit's own, or the move from the calibrate stage's world
back to the session rig's? (issue 18). On a session with ground truth (gt/gt.npz) after the fit stage:
the camera marks' rigid and similarity fits (scale, misfit), the truth taken into the calibrated
world through each camera and moved back by the same rigid fit (reads the calibration's own
consistency; a wrong direction or scale would read centimetres), and the moved fit against the truth
(same topology): its similarity to the truth is the fit's own pose and scale error.

    PYTHONPATH=. .venv/bin/python bench/rigframe.py sessions/example
"""
import numpy as np, json
from mvrecon.session import load_session
from mvrecon.cameras import load_rig
from mvrecon.render.raycast import MeshQuery
from mvrecon.geometry import umeyama
from mvrecon.evaluate.meshes import read_mesh
from mvrecon.evaluate import load_face_mesh
import sys
root = sys.argv[1] if len(sys.argv) > 1 else 'sessions/example'
s = load_session(root, check_images=False)
shipped = load_rig(s.rig_path)
used = load_rig(root + '/calibrate/rig.json')
def marks(rig):
    pts = []
    for c in shipped.cameras:
        c2w = np.linalg.inv(rig[c.name].world_to_cam)
        pts.append((c2w @ np.array([[0, 0, 0, 1], [0, 0, 0.1, 1], [0, 0.1, 0, 1.0]]).T).T[:, :3])
    return np.concatenate(pts)
src, dst = marks(used), marks(shipped)
rig_m = umeyama(src, dst, with_scale=False)
sim_m = umeyama(src, dst, with_scale=True)
mis = lambda m: np.sqrt(((m.apply(src) - dst) ** 2).sum(1).mean()) * 1e3
print('camera marks: rigid misfit %.3f mm, similarity misfit %.3f mm, scale %.5f' % (mis(rig_m), mis(sim_m), sim_m.scale))
cc_u = np.stack([np.linalg.inv(used[c.name].world_to_cam)[:3, 3] for c in shipped.cameras])
cc_s = np.stack([c.center for c in shipped.cameras])
du, ds = np.linalg.norm(cc_u[:, None] - cc_u[None], axis=2), np.linalg.norm(cc_s[:, None] - cc_s[None], axis=2)
print('camera baselines ratio calibrated/shipped', np.round((du / np.where(ds > 0, ds, 1))[np.triu_indices(4, 1)], 5))
gt = np.load(root + '/gt/gt.npz')
gtv = gt['verts'][0].astype(np.float64)
fitv, fitf = read_mesh(root + '/fit/detailed_f000.obj')[:2]
fitv = np.asarray(fitv, np.float64)
moved = rig_m.apply(fitv)
scan = load_face_mesh(root + '/scan/scan.ply', root + '/scan/landmarks.txt', 'm')
q = MeshQuery(scan.vertices, scan.triangles)
fw = gt['face_weight'] > 0.5
def d(v):
    return np.median(q.closest(v[fw]).distances) * 1e3
print('GT verts to scan (face, median mm): %.3f' % d(gtv))
print('fit moved to scan: %.3f ; fit unmoved: %.3f' % (d(moved), d(fitv)))
# decompose fit's error vs GT (same topology)
print('fit moved vs GT per-vertex (face) median %.3f mm' % (np.median(np.linalg.norm(moved[fw] - gtv[fw], axis=1)) * 1e3))
a = umeyama(moved[fw], gtv[fw], with_scale=True)
ang = np.degrees(np.arccos(np.clip((np.trace(a.rotation) - 1) / 2, -1, 1)))
print('similarity fit->GT: scale %.5f, rot %.3f deg, trans %s mm; residual median %.3f mm' % (a.scale, ang, np.round(a.translation * 1e3, 2), np.median(np.linalg.norm(a.apply(moved[fw]) - gtv[fw], axis=1)) * 1e3))
# the same path for the truth: GT expressed in the calibrated world through camera 0 and moved back
for c in shipped.cameras:
    t = np.linalg.inv(used[c.name].world_to_cam) @ c.world_to_cam
    gt_cal = gtv @ t[:3, :3].T + t[:3, 3]
    back = rig_m.apply(gt_cal)
    print('GT through', c.name, '-> calibrated world -> moved back: to scan %.3f mm, vs GT max %.3f mm' % (d(back), np.abs(back - gtv).max() * 1e3))
