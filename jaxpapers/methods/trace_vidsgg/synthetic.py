"""An offline synthetic video scene-graph benchmark (deterministic under a seed).

Each video shows ``n`` (2..n_max) textured objects of ``CLASSES`` moving at constant velocity
(bouncing off the borders) over a static crop of a real photo (scikit-image images; train and
test use disjoint photos and disjoint seed streams). Objects have distinct depths and are drawn
far to near, so nearer objects occlude.

Relations (multi-label) are defined for an ordered pair (s, o) at frame t only when the two
centres are closer than ``rel_radius`` · image size (the "interacting" pairs, like Action
Genome annotating only a person's interactions). With c = box centre, v = (c(t+Δ) − c(t−Δ)) /
2Δ the velocity over the clip (Δ = stride · (clip_len // 2)), u = (c_o − c_s)/|c_o − c_s| and
v_min = ``min_speed`` pixels/frame:

  left_of      c_s.x + 2 < c_o.x
  above        c_s.y + 2 < c_o.y
  in_front_of  boxes intersect and s is nearer than o
  behind       boxes intersect and s is farther than o
  approaching  v_s · u > v_min                (s moves towards o)
  moving_away  v_s · u < −v_min
  following    |v_s|, |v_o| > v_min, cos(v_s, v_o) > 0.8 and v_o · (c_s − c_o) < 0
  passing      |v_s|, |v_o| > v_min and cos(v_s, v_o) < −0.5

Two forms: ``make_frames`` gives Action-Genome-style key-frame samples (a clip of ``clip_len``
frames every ``stride`` frames around the key frame, key-frame boxes, labels, dense multi-label
relation tensor); ``video_to_vidvrd`` gives the ImageNet-VidVRD JSON of a whole video
(trajectories per frame, relation instances as maximal runs of frames).
"""

from __future__ import annotations

import functools
import zlib

import numpy as np

CLASSES = ("person", "ball", "box", "car", "dog")
PREDICATES = (
    "left_of",
    "above",
    "in_front_of",
    "behind",
    "approaching",
    "moving_away",
    "following",
    "passing",
)
TRAIN_BACKGROUNDS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "camera",
    "grass",
    "brick",
)
TEST_BACKGROUNDS = ("immunohistochemistry", "retina", "gravel", "moon", "coins", "cell")
_COLOURS = np.array([[220, 60, 50], [60, 200, 70], [60, 90, 230], [235, 215, 40], [200, 70, 210]])
_SIZES = ((0.22, 0.34), (0.12, 0.18), (0.16, 0.26), (0.24, 0.32), (0.16, 0.24))  # of image size


# A resized photo bundled with scikit-image (no user input); every video of a split reuses it.
@functools.lru_cache(maxsize=32)
def _background(name: str, size: int) -> np.ndarray:
    import skimage.data

    im = np.asarray(getattr(skimage.data, name)())
    if im.ndim == 2:
        im = np.repeat(im[..., None], 3, -1)
    im = im[..., :3].astype(np.uint8)
    s = 2 * size  # nearest-neighbour resize of the whole photo to 2S x 2S; videos crop S x S
    ys = (np.arange(s) * im.shape[0] / s).astype(int)
    xs = (np.arange(s) * im.shape[1] / s).astype(int)
    return im[ys][:, xs]


def _texture(cls: int, h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class-specific pattern (stripes, disc, checker, bars, dots) -> (rgb (h,w,3), mask (h,w))."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.clip(_COLOURS[cls] * rng.uniform(0.8, 1.1), 0, 255)
    mask = np.ones((h, w), bool)
    if cls == 0:
        pat = (yy // 2) % 2
    elif cls == 1:
        mask = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2 <= 1.0
        pat = np.zeros((h, w))
    elif cls == 2:
        pat = ((yy // 3) + (xx // 3)) % 2
    elif cls == 3:
        pat = (xx // 2) % 2
    else:
        pat = ((yy % 4 == 1) & (xx % 4 == 1)).astype(float)
    rgb = base[None, None, :] * (1.0 - 0.45 * pat[..., None])
    return rgb.astype(np.uint8), mask


def _video(seed: int, split: str, num_frames: int, size: int, n_max: int) -> dict:
    """Objects, trajectories (num_frames, n, 4) and the background of one video."""
    rng = np.random.default_rng(zlib.crc32(f"{split}/{seed}".encode()))
    bgs = TRAIN_BACKGROUNDS if split == "train" else TEST_BACKGROUNDS
    bg = _background(bgs[rng.integers(len(bgs))], size)
    oy, ox = rng.integers(0, bg.shape[0] - size + 1), rng.integers(0, bg.shape[1] - size + 1)
    n = int(rng.integers(2, n_max + 1))
    cls = rng.integers(0, len(CLASSES), n)
    wh = np.array([[rng.uniform(*_SIZES[c]) * size, rng.uniform(*_SIZES[c]) * size] for c in cls])
    pos = rng.uniform(0, 1, (n, 2)) * (size - wh)  # top-left corners
    speed = rng.choice([0.0, 1.0, 2.0], size=(n, 1), p=[0.25, 0.4, 0.35])
    ang = rng.uniform(0, 2 * np.pi, n)
    vel = speed * np.stack([np.cos(ang), np.sin(ang)], 1)
    traj = np.zeros((num_frames, n, 4))
    for t in range(num_frames):
        traj[t] = np.concatenate([pos, pos + wh], 1)
        pos = pos + vel
        lo, hi = pos < 0, pos > size - wh  # bounce off the borders
        vel = np.where(lo | hi, -vel, vel)
        pos = np.clip(pos, 0, size - wh)
    textures = [
        _texture(int(c), int(round(w[1])), int(round(w[0])), rng)
        for c, w in zip(cls, wh, strict=True)
    ]
    depth = rng.permutation(n)  # 0 = nearest
    return dict(
        bg=bg[oy : oy + size, ox : ox + size],
        cls=cls,
        traj=traj,
        depth=depth,
        textures=textures,
        n=n,
    )


def _render(v: dict, t: int) -> np.ndarray:
    img = v["bg"].copy()
    size = img.shape[0]
    for i in np.argsort(-v["depth"]):  # far to near
        x1, y1 = np.round(v["traj"][t, i, :2]).astype(int)
        rgb, mask = v["textures"][i]
        h, w = mask.shape
        ys, xs = slice(max(y1, 0), min(y1 + h, size)), slice(max(x1, 0), min(x1 + w, size))
        sub_m = mask[ys.start - y1 : ys.stop - y1, xs.start - x1 : xs.stop - x1]
        img[ys, xs][sub_m] = rgb[ys.start - y1 : ys.stop - y1, xs.start - x1 : xs.stop - x1][sub_m]
    return img


def relations_at(
    v: dict, t: int, delta: int, size: int, rel_radius: float, min_speed: float
) -> np.ndarray:
    """Dense (n, n, P) bool relations of the video at frame t (module docstring rules)."""
    tr = v["traj"]
    c = (tr[t, :, :2] + tr[t, :, 2:]) / 2
    t0, t1 = max(t - delta, 0), min(t + delta, len(tr) - 1)
    vel = ((tr[t1, :, :2] + tr[t1, :, 2:]) - (tr[t0, :, :2] + tr[t0, :, 2:])) / 2 / max(t1 - t0, 1)
    n = len(c)
    diff = c[None, :, :] - c[:, None, :]  # [s, o] = c_o - c_s
    dist = np.linalg.norm(diff, axis=-1)
    u = diff / np.maximum(dist, 1e-6)[..., None]
    b = tr[t]
    inter = (
        np.minimum(b[:, None, 2], b[None, :, 2]) > np.maximum(b[:, None, 0], b[None, :, 0])
    ) & (np.minimum(b[:, None, 3], b[None, :, 3]) > np.maximum(b[:, None, 1], b[None, :, 1]))
    sp = np.linalg.norm(vel, axis=-1)
    cos = (vel @ vel.T) / np.maximum(sp[:, None] * sp[None, :], 1e-6)
    moving = (sp[:, None] > min_speed) & (sp[None, :] > min_speed)
    toward = np.einsum("sd,sod->so", vel, u)
    d = v["depth"]
    rel = np.stack(
        [
            c[:, None, 0] + 2 < c[None, :, 0],
            c[:, None, 1] + 2 < c[None, :, 1],
            inter & (d[:, None] < d[None, :]),
            inter & (d[:, None] > d[None, :]),
            toward > min_speed,
            toward < -min_speed,
            moving & (cos > 0.8) & (np.einsum("od,sod->so", vel, -u) < 0),
            moving & (cos < -0.5),
        ],
        -1,
    )
    related = (dist < rel_radius * size) & ~np.eye(n, dtype=bool)
    return rel & related[..., None]


def make_frames(cfg, split: str) -> dict[str, np.ndarray]:
    """Key-frame samples of ``cfg.num_videos[split]`` videos (``cfg`` = config.data)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    size, t_len, stride, n_max = cfg.image_size, cfg.clip_len, cfg.stride, cfg.n_max
    half = stride * (t_len // 2)
    num_frames = 2 * half + cfg.keys_per_video * cfg.key_gap
    num_videos = cfg.num_train_videos if split == "train" else cfg.num_test_videos
    out = {k: [] for k in ("frames", "boxes", "labels", "num_boxes", "rels")}
    for vid in range(num_videos):
        v = _video(cfg.seed * 100003 + vid, split, num_frames, size, n_max)
        imgs = {}
        for kidx in range(cfg.keys_per_video):
            t = half + kidx * cfg.key_gap
            ts = [t + stride * (i - t_len // 2) for i in range(t_len)]
            for tt in ts:
                if tt not in imgs:
                    imgs[tt] = _render(v, tt)
            n = v["n"]
            boxes = np.zeros((n_max, 4), np.float32)
            boxes[:n] = v["traj"][t]
            labels = np.zeros((n_max,), np.int32)
            labels[:n] = v["cls"]
            rels = np.zeros((n_max, n_max, len(PREDICATES)), np.uint8)
            rels[:n, :n] = relations_at(v, t, half, size, cfg.rel_radius, cfg.min_speed)
            out["frames"].append(np.stack([imgs[tt] for tt in ts]))
            out["boxes"].append(boxes)
            out["labels"].append(labels)
            out["num_boxes"].append(np.int32(n))
            out["rels"].append(rels)
    return {k: np.stack(v) for k, v in out.items()}


def video_to_vidvrd(seed: int, split: str, cfg, num_frames: int = 60) -> dict:
    """One synthetic video in the ImageNet-VidVRD JSON format (frames rendered separately)."""
    v = _video(seed, split, num_frames, cfg.image_size, cfg.n_max)
    half = cfg.stride * (cfg.clip_len // 2)
    traj = [
        [
            {
                "tid": i,
                "bbox": dict(
                    zip(
                        ("xmin", "ymin", "xmax", "ymax"),
                        map(float, np.round(v["traj"][t, i])),
                        strict=True,
                    )
                ),
            }
            for i in range(v["n"])
        ]
        for t in range(num_frames)
    ]
    rel = np.stack(
        [
            relations_at(v, t, half, cfg.image_size, cfg.rel_radius, cfg.min_speed)
            for t in range(num_frames)
        ]
    )  # (F, n, n, P)
    insts = []
    for s, o, p in zip(*np.nonzero(rel.any(0)), strict=False):
        on = np.concatenate([[False], rel[:, s, o, p], [False]]).astype(int)
        starts, ends = np.nonzero(np.diff(on) == 1)[0], np.nonzero(np.diff(on) == -1)[0]
        for b, e in zip(starts, ends, strict=False):
            insts.append(
                {
                    "subject_tid": int(s),
                    "object_tid": int(o),
                    "predicate": PREDICATES[p],
                    "begin_fid": int(b),
                    "end_fid": int(e),
                }
            )
    return {
        "video_id": f"synthetic_{split}_{seed}",
        "frame_count": num_frames,
        "width": cfg.image_size,
        "height": cfg.image_size,
        "subject/objects": [{"tid": i, "category": CLASSES[c]} for i, c in enumerate(v["cls"])],
        "trajectories": traj,
        "relation_instances": insts,
    }


def render_video(seed: int, split: str, cfg, num_frames: int = 60) -> np.ndarray:
    """The frames (F, S, S, 3) uint8 of the video ``video_to_vidvrd`` describes."""
    v = _video(seed, split, num_frames, cfg.image_size, cfg.n_max)
    return np.stack([_render(v, t) for t in range(num_frames)])
