"""Training data: frame sources (folders, videos, bags) and the crop/enhancement pipeline."""
