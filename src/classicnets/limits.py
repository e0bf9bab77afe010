"""Ceilings on the sizes a user can ask for. Beyond them a run could only fail later, with a
traceback from an allocator or an integer overflow, instead of one sentence at the start."""

MAX_IMAGE_SIZE = 4096  # px, the side of a square input: VGG16 needs ~16 GB per image there
MAX_BATCH_SIZE = 65_536  # images per batch
MAX_SEED = 2**32 - 1  # NumPy's seed range
