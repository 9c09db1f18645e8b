"""Helpers shared by the data tests (imported by name: pytest puts this folder on sys.path)."""
from os import path as osp

import cv2
import numpy as np

import gaussiansr_plugin  # noqa: F401  (torchvision alias + registration, before basicsr)
from basicsr.data import build_dataset

HR_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'data', 'hr')
HR_NAMES = ('cat', 'cup', 'face')  # 96x128 RGB, 120x100 RGB, 90x110 gray


def read_rgb(path: str) -> np.ndarray:
    """[H, W, 3] float32 RGB in [0, 1], decoded as the datasets do (gray expanded to 3 channels)."""
    return cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.


def build(**opt):
    """Build a dataset through BasicSR's registry from an inline (yml-like) option dict."""
    opt.setdefault('name', 'test')
    opt.setdefault('phase', 'train' if opt['type'] == 'ArbitraryScaleImageDataset' else 'val')
    return build_dataset(opt)
