"""Procedural exercise videos: the embedded default dataset.

An articulated stick figure performs one of the five exercises (push-ups, pull-ups, bench press,
lunges, wall push-ups). Each *actor* (the synthetic counterpart of a UCF101 group) has a body size,
line thickness, colouring and camera position; each clip adds its own tempo, phase, amplitude,
facing direction, background and sensor noise. Everything is deterministic from the seed, and a
whole dataset renders in seconds, so the book and the tests never need a download.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..config import CLASSES, DataConfig
from .windows import Clip

RENDERER_VERSION = 1  # bump when the drawing changes: cached clips are keyed by it
SUPERSAMPLE = 2  # draw at 2× and shrink with INTER_AREA: anti-aliased limbs

# Limb lengths in pixels of a 64-pixel frame for a body of scale 1.
TORSO, UPPER_ARM, FOREARM, THIGH, SHIN, HEAD = 13.0, 6.5, 6.5, 8.5, 8.5, 3.2


@dataclass
class Actor:
    scale: float
    thickness: float
    figure: float  # gray level of the body
    dx: float
    dy: float


@dataclass
class Motion:
    period: float  # frames per repetition
    phase: float
    amplitude: float
    facing: int  # +1 faces right, -1 faces left


def _ik(root: np.ndarray, end: np.ndarray, l1: float, l2: float, bend: float) -> np.ndarray:
    """Middle joint of a two-link limb from root to end (bend = ±1 picks the side)."""
    delta = end - root
    dist = float(np.clip(np.hypot(*delta), abs(l1 - l2) + 1e-3, l1 + l2 - 1e-3))
    cos_a = (l1 * l1 + dist * dist - l2 * l2) / (2 * l1 * dist)
    angle = np.arctan2(delta[1], delta[0]) + bend * np.arccos(np.clip(cos_a, -1, 1))
    return root + l1 * np.array([np.cos(angle), np.sin(angle)])


def _polar(origin: np.ndarray, length: float, angle_deg: float) -> np.ndarray:
    """Point at ``length`` from ``origin``; 0° points right, 90° points up (image y grows down)."""
    a = np.deg2rad(angle_deg)
    return origin + length * np.array([np.cos(a), -np.sin(a)])


def _pose(exercise: str, u: float, s: float) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, list]:
    """Limb segments, head centre and props of one exercise at progress u ∈ [0, 1].

    Coordinates are in a figure frame centred near (32, 32) of a 64-pixel image, facing right.
    """
    floor = 54.0
    legs, arm = (THIGH + SHIN) * s, (UPPER_ARM + FOREARM) * s
    segments: list[tuple[np.ndarray, np.ndarray]] = []
    props: list = []  # ("line", p, q) or ("circle", centre, radius)
    props.append(("line", np.array([0.0, floor + 1.5]), np.array([64.0, floor + 1.5])))
    if exercise in ("PushUps", "WallPushups"):
        if exercise == "PushUps":
            feet = np.array([12.0, floor])
            body_angle = 24 - 16 * u  # degrees above the floor
            wall = None
        else:
            wall = 46.0
            feet = np.array([wall - 0.55 * (legs + TORSO * s), floor])
            body_angle = 70 - 14 * u
        hip = _polar(feet, legs, body_angle)
        knee = _polar(feet, SHIN * s, body_angle)
        shoulder = _polar(hip, TORSO * s, body_angle)
        head = _polar(shoulder, HEAD * s * 1.5, body_angle + 8)
        top_shoulder = _polar(feet, legs + TORSO * s, 24 if wall is None else 70)  # pose at u = 0
        if wall is None:
            hand = np.array([top_shoulder[0], floor])
        else:
            hand = np.array([wall, top_shoulder[1] + 2.0])
            props.append(("line", np.array([wall + 1.5, 4.0]), np.array([wall + 1.5, floor + 1.5])))
        elbow = _ik(shoulder, hand, UPPER_ARM * s, FOREARM * s, +1)
        segments += [(feet, knee), (knee, hip), (hip, shoulder), (shoulder, elbow), (elbow, hand)]
    elif exercise == "PullUps":  # front view: two arms, two legs
        bar_y = 10.0
        props.append(("line", np.array([14.0, bar_y]), np.array([50.0, bar_y])))
        shoulder_y = bar_y + 0.9 * arm - 0.65 * arm * u
        for side in (-1, 1):
            shoulder = np.array([32 + side * 4 * s, shoulder_y])
            hand = np.array([32 + side * 9 * s, bar_y])
            elbow = _ik(shoulder, hand, UPPER_ARM * s, FOREARM * s, -side)
            hip = np.array([32 + side * 2.5 * s, shoulder_y + TORSO * s])
            knee = hip + np.array([side * 1.0, THIGH * s])
            foot = knee + np.array([side * 0.5 - 1.5 * u * side, SHIN * s * (1 - 0.25 * u)])
            segments += [(shoulder, elbow), (elbow, hand), (hip, knee), (knee, foot)]
        neck = np.array([32.0, shoulder_y])
        segments += [(np.array([32 - 4 * s, shoulder_y]), np.array([32 + 4 * s, shoulder_y])),
                     (neck, np.array([32.0, shoulder_y + TORSO * s]))]
        head = neck + np.array([0.0, -HEAD * s * 1.4])
    elif exercise == "BenchPress":  # lying on a bench, pressing a bar up
        bench_y = 40.0
        props.append(("line", np.array([10.0, bench_y + 2]), np.array([44.0, bench_y + 2])))
        props.append(("line", np.array([14.0, bench_y + 2]), np.array([14.0, floor])))
        props.append(("line", np.array([40.0, bench_y + 2]), np.array([40.0, floor])))
        shoulder = np.array([18.0, bench_y - 1])
        hip = shoulder + np.array([TORSO * s, 0.0])
        knee = hip + np.array([THIGH * s * 0.8, -THIGH * s * 0.6])
        foot = np.array([knee[0] + 2, floor])
        head = shoulder + np.array([-HEAD * s * 1.4, -0.5])
        hand = shoulder + np.array([1.0, -(0.35 + 0.6 * u) * arm])
        elbow = _ik(shoulder, hand, UPPER_ARM * s, FOREARM * s, -1)
        segments += [(shoulder, hip), (hip, knee), (knee, foot), (shoulder, elbow), (elbow, hand)]
        props.append(("bar", hand, 3.5 * s))
    elif exercise == "Lunges":  # side view, dropping the hips between a split stance
        stance = 0.9 * legs
        front, back = np.array([32 + stance / 2, floor]), np.array([32 - stance / 2, floor])
        hip = np.array([32.0, floor - 0.97 * legs + 0.42 * legs * u])
        knee_front = _ik(hip, front, THIGH * s, SHIN * s, -1)
        knee_back = _ik(hip, back, THIGH * s, SHIN * s, -1)
        shoulder = hip + np.array([0.0, -TORSO * s])
        hand = hip + np.array([1.0, -1.0])
        elbow = _ik(shoulder, hand, UPPER_ARM * s, FOREARM * s, 1)
        head = shoulder + np.array([0.5, -HEAD * s * 1.4])
        segments += [(hip, knee_front), (knee_front, front), (hip, knee_back), (knee_back, back),
                     (hip, shoulder), (shoulder, elbow), (elbow, hand)]
    else:
        raise ValueError(f"unknown exercise {exercise!r}; choose one of {', '.join(CLASSES)}")
    return segments, head, props


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random background: a gradient plus a few soft blobs."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(0.08, 0.45)
    gx, gy = rng.uniform(-0.15, 0.15, size=2)
    bg = base + gx * (xx - 0.5) + gy * (yy - 0.5)
    for _ in range(3):
        cx, cy = rng.uniform(0, 1, size=2)
        sigma = rng.uniform(0.1, 0.3)
        bg += rng.uniform(-0.08, 0.08) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    return bg.astype(np.float32)


def render_clip(exercise: str, actor: Actor, motion: Motion, n_frames: int, size: int,
                rng: np.random.Generator) -> np.ndarray:
    """Frames (T, size, size) uint8 of one clip."""
    big = size * SUPERSAMPLE
    zoom = big / 64.0
    background = cv2.resize(_background(rng, size), (big, big), interpolation=cv2.INTER_LINEAR)
    noise_sigma = rng.uniform(0.0, 0.025)
    frames = np.empty((n_frames, size, size), np.uint8)
    width = max(1, int(round(actor.thickness * zoom)))
    for t in range(n_frames):
        u = motion.amplitude * 0.5 * (1 - np.cos(2 * np.pi * t / motion.period + motion.phase))
        segments, head, props = _pose(exercise, u, actor.scale)
        canvas = background.copy()

        def px(p: np.ndarray) -> tuple[int, int]:
            x = p[0] if motion.facing > 0 else 64 - p[0]
            return int(round((x + actor.dx) * zoom)), int(round((p[1] + actor.dy) * zoom))

        for prop in props:
            if prop[0] == "line":
                cv2.line(canvas, px(prop[1]), px(prop[2]), 0.6, max(1, width - 1), cv2.LINE_AA)
            else:  # barbell plate, seen end-on
                cv2.circle(canvas, px(prop[1]), int(prop[2] * zoom), 0.7, -1, cv2.LINE_AA)
        for p, q in segments:
            cv2.line(canvas, px(p), px(q), actor.figure, width, cv2.LINE_AA)
        cv2.circle(canvas, px(head), int(round(HEAD * actor.scale * zoom)), actor.figure, -1, cv2.LINE_AA)
        small = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
        if noise_sigma > 0:
            small = small + rng.normal(0, noise_sigma, small.shape).astype(np.float32)
        frames[t] = np.clip(small * 255 + 0.5, 0, 255).astype(np.uint8)
    return frames


def make_actor(seed: int, actor_id: int) -> Actor:
    rng = np.random.default_rng([seed, 1_000_003, actor_id])
    return Actor(scale=rng.uniform(0.85, 1.15), thickness=rng.uniform(1.6, 2.6),
                 figure=rng.uniform(0.8, 1.0), dx=rng.uniform(-5, 5), dy=rng.uniform(-3, 2))


def generate(cfg: DataConfig) -> list[Clip]:
    """All synthetic clips of ``cfg``: ``clips_per_class`` per class, actors spread evenly.

    Clip names follow UCF101 (``v_<Class>_gXX_cYY``) with the actor as the group, so every split
    and report treats both datasets alike.
    """
    clips = []
    for class_index, exercise in enumerate(cfg.classes):
        for clip_index in range(cfg.clips_per_class):
            actor_id = clip_index % cfg.n_actors
            rng = np.random.default_rng([cfg.seed, class_index, clip_index])
            motion = Motion(period=rng.uniform(28, 56), phase=rng.uniform(0, 2 * np.pi),
                            amplitude=rng.uniform(0.65, 1.0), facing=int(rng.choice([-1, 1])))
            frames = render_clip(exercise, make_actor(cfg.seed, actor_id), motion,
                                 cfg.clip_length, cfg.image_size, rng)
            group = actor_id + 1
            clip_number = clip_index // cfg.n_actors + 1
            clips.append(Clip(f"v_{exercise}_g{group:02d}_c{clip_number:02d}", exercise, group, frames))
    return clips
