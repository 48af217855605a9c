import cv2
import numpy as np
import pytest

from mvrecon import cameras as C
from mvrecon.errors import InputError
from mvrecon.geometry import quaternion_to_matrix


def random_camera(rng, dist=True, name="cam0") -> C.Camera:
    w, h = 1280, 960
    K = np.array([[1500.0 + rng.uniform(-50, 50), 0, 640.3 + rng.uniform(-9, 9)],
                  [0, 1502.0 + rng.uniform(-50, 50), 478.1 + rng.uniform(-9, 9)], [0, 0, 1]])
    d = np.array([-0.12, 0.08, 0.001, -0.0015, -0.02]) if dist else np.zeros(0)
    center = rng.normal(size=3)
    center = center / np.linalg.norm(center) * 1.2
    M = C.look_at(center, rng.normal(scale=0.05, size=3), up=(0, 1, 0))
    return C.Camera(name=name, width=w, height=h, K=K, dist=d, world_to_cam=M)


def test_projection_matches_opencv_with_distortion(rng):
    cam = random_camera(rng)
    pts = rng.normal(scale=0.1, size=(200, 3))
    uv, z = cam.project(pts)
    rvec, _ = cv2.Rodrigues(cam.R)
    ref, _ = cv2.projectPoints(pts, rvec, cam.t, cam.K, cam.dist)
    assert np.all(z > 0)
    np.testing.assert_allclose(uv, ref[:, 0], atol=1e-6)
    # the distortion is strong enough that ignoring it would be caught
    uv0, _ = cam.project(pts, distort=False)
    assert np.abs(uv0 - uv).max() > 1.0


def test_unproject_inverts_project(rng):
    cam = random_camera(rng)
    pts = rng.normal(scale=0.1, size=(100, 3))
    uv, z = cam.project(pts)
    np.testing.assert_allclose(cam.unproject(uv, z), pts, atol=1e-9)
    rays = cam.unproject(uv)
    to_pts = pts - cam.center
    to_pts /= np.linalg.norm(to_pts, axis=1, keepdims=True)
    np.testing.assert_allclose(rays, to_pts, atol=1e-9)


def test_undistort_points_matches_opencv(rng):
    cam = random_camera(rng)
    px = rng.uniform([50, 50], [1230, 910], size=(100, 2))
    ref = cv2.undistortPointsIter(px[:, None], cam.K, cam.dist, None, None,
                                  (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-15))[:, 0]
    np.testing.assert_allclose(cam.undistort_points(px), ref, atol=1e-7)


def test_undistort_image_moves_points_to_pinhole_projection(rng):
    cam = random_camera(rng)
    img = np.zeros((cam.height, cam.width), np.float32)
    pts = rng.normal(scale=0.05, size=(20, 3))
    uv, _ = cam.project(pts)
    ok = (uv[:, 0] > 40) & (uv[:, 0] < cam.width - 40) & (uv[:, 1] > 40) & (uv[:, 1] < cam.height - 40)
    yy, xx = np.mgrid[0:cam.height, 0:cam.width]
    for u, v in uv[ok]:
        img += np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 1.5**2))
    und, cam0 = cam.undistort_image(img)
    assert not cam0.has_distortion
    uv0, _ = cam0.project(pts)
    for u, v in uv0[ok]:
        y0, x0 = int(round(v)), int(round(u))
        win = und[y0 - 4:y0 + 5, x0 - 4:x0 + 5]
        wy, wx = np.mgrid[-4:5, -4:5]
        cx = (win * wx).sum() / win.sum() + x0
        cy = (win * wy).sum() / win.sum() + y0
        assert abs(cx - u) < 0.15 and abs(cy - v) < 0.15


def test_colmap_round_trip_and_convention(rng):
    cam = random_camera(rng)
    model, params = C.to_colmap_camera(cam)
    assert model == "OPENCV" or model == "FULL_OPENCV"
    # COLMAP's principal point is half a pixel larger than OpenCV's
    assert params[2] == pytest.approx(cam.K[0, 2] + 0.5)
    back = C.from_colmap_camera(model, cam.width, cam.height, params)
    np.testing.assert_allclose(back.K, cam.K, atol=1e-12)
    np.testing.assert_allclose(back.dist[:5], cam.dist[:5], atol=1e-15)
    q, t = C.to_colmap_pose(cam)
    np.testing.assert_allclose(C.from_colmap_pose(q, t), cam.world_to_cam, atol=1e-12)
    # an independent reference: COLMAP projects with R(q) X + t and the same OpenCV model
    pts = rng.normal(scale=0.1, size=(10, 3))
    rvec, _ = cv2.Rodrigues(quaternion_to_matrix(q))
    ref, _ = cv2.projectPoints(pts, rvec, t, back.K, back.dist)
    np.testing.assert_allclose(cam.project(pts)[0], ref[:, 0], atol=1e-6)


def test_opengl_round_trip_and_axes(rng):
    cam = random_camera(rng, dist=False)
    c2w = C.to_opengl_cam_to_world(cam.world_to_cam)
    np.testing.assert_allclose(C.from_opengl_cam_to_world(c2w), cam.world_to_cam, atol=1e-12)
    # the camera looks down its -Z axis: a point in front of the camera has negative GL z
    p = rng.normal(scale=0.05, size=(30, 3))
    pc_gl = (np.linalg.inv(c2w) @ np.c_[p, np.ones(len(p))].T).T
    assert np.all(pc_gl[:, 2] < 0)
    # clip-space projection reproduces OpenCV pixels (GL rows count from the bottom)
    P = C.opengl_projection(cam.K, cam.width, cam.height)
    clip = (P @ pc_gl.T).T
    ndc = clip[:, :3] / clip[:, 3:]
    u = (ndc[:, 0] + 1) / 2 * cam.width - 0.5
    v_gl = (ndc[:, 1] + 1) / 2 * cam.height - 0.5
    uv, _ = cam.project(p)
    np.testing.assert_allclose(u, uv[:, 0], atol=1e-6)
    np.testing.assert_allclose(cam.height - 1 - v_gl, uv[:, 1], atol=1e-6)


def test_pytorch3d_convention_against_its_projection_formula(rng):
    cam = random_camera(rng, dist=False)
    cam = cam.replace(width=1000, height=700)
    p3 = C.to_pytorch3d(cam)
    pts = rng.normal(scale=0.1, size=(50, 3))
    # pytorch3d: row vectors, then NDC = f * X/Z + p, screen u = W/2 - x_ndc * s (+X is left)
    Xc = pts @ p3["R"] + p3["T"]
    ndc = p3["focal_length"] * Xc[:, :2] / Xc[:, 2:] + p3["principal_point"]
    s = min(cam.width, cam.height) / 2
    u = cam.width / 2 - ndc[:, 0] * s
    v = cam.height / 2 - ndc[:, 1] * s
    np.testing.assert_allclose(np.c_[u, v], cam.project(pts)[0], atol=1e-6)
    back = C.from_pytorch3d(**p3)
    np.testing.assert_allclose(back.K, cam.K, atol=1e-9)
    np.testing.assert_allclose(back.world_to_cam, cam.world_to_cam, atol=1e-12)


def test_nerfstudio_round_trip(rng):
    rig = C.Rig(cameras=(random_camera(rng, name="a"), random_camera(rng, name="b")))
    back = C.from_nerfstudio(C.to_nerfstudio(rig))
    for a, b in zip(rig, back):
        assert a.name == b.name
        np.testing.assert_allclose(a.K, b.K, atol=1e-12)
        np.testing.assert_allclose(a.dist, b.dist, atol=1e-15)
        np.testing.assert_allclose(a.world_to_cam, b.world_to_cam, atol=1e-12)


def test_conversions_do_not_modify_inputs(rng):
    cam = random_camera(rng)
    before = (cam.K.copy(), cam.world_to_cam.copy(), cam.dist.copy())
    C.to_colmap_camera(cam); C.to_colmap_pose(cam); C.to_opengl_cam_to_world(cam.world_to_cam)
    C.to_pytorch3d(cam.replace(dist=np.zeros(0))); cam.undistorted(); cam.scaled(0.5)
    for a, b in zip(before, (cam.K, cam.world_to_cam, cam.dist)):
        np.testing.assert_array_equal(a, b)


def test_scaled_camera_keeps_pixel_centres(rng):
    cam = random_camera(rng, dist=False)
    half = cam.scaled(0.5)
    pts = rng.normal(scale=0.1, size=(10, 3))
    uv, _ = cam.project(pts)
    uv2, _ = half.project(pts)
    np.testing.assert_allclose((uv + 0.5) * 0.5 - 0.5, uv2, atol=1e-9)


def test_rig_json_round_trip(tmp_path, rng):
    rig = C.Rig(cameras=(random_camera(rng, name="a"), random_camera(rng, name="b")), synchronized=False,
                board=C.Board(7, 5, 0.04, 0.03))
    C.save_rig(rig, tmp_path)
    back = C.load_rig(tmp_path)
    assert back.names == ["a", "b"] and not back.synchronized and back.board.squares_x == 7
    np.testing.assert_array_equal(back["b"].world_to_cam, rig["b"].world_to_cam)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "malformed JSON"),
        ('{"cameras": []}', "non-empty 'cameras'"),
        ('{"cameras": [{"name": "a", "width": 10, "height": 10, "K": [[1, 0], [0, 1]]}]}', "K has shape"),
        ('{"cameras": [{"name": "a", "width": 10, "height": 10}]}', "lacks K"),
        ('{"cameras": [{"name": "a", "width": 10, "height": 10, "K": [[1,0,0],[0,1,0],[0,0,1]],'
         ' "world_to_cam": [[2,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}', "not a rigid transform"),
    ],
)
def test_malformed_rig_is_one_clear_error(tmp_path, content, message):
    (tmp_path / "rig.json").write_text(content)
    with pytest.raises(InputError) as e:
        C.load_rig(tmp_path)
    assert message in str(e.value) and "rig.json" in str(e.value) and "\n" not in str(e.value)
