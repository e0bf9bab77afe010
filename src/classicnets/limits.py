"""Ceilings on the sizes a user can ask for. Beyond them a run could only fail later, with a
traceback from an allocator or an integer overflow, instead of one sentence at the start."""

MAX_IMAGE_SIZE = 4096  # px, the side of a square input: VGG16 needs ~16 GB per image there
MAX_BATCH_SIZE = 65_536  # images per batch
MAX_SEED = 2**32 - 1  # NumPy's seed range
MAX_CLASSES = 100_000  # a classifier head of 4096 x 100,000 floats is already 1.6 GB
MAX_IN_CHANS = 64  # input channels; images have 1 to 4, multispectral stacks a few dozen
