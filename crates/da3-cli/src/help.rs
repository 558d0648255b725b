//! Help text shared by the inference subcommands, as macros expanding to string literals so
//! that each command's `long_about` can be assembled with `concat!`.

/// How images are preprocessed (every inference command).
macro_rules! preprocessing_help {
    () => {
        "Images of any size are preprocessed like the reference Python pipeline (InputProcessor; \
bit-exact except for rare one-level differences in IPP cubic upscaling, see --opencv-flavor; \
JPEG files are decoded by libjpeg with Pillow's settings, giving Pillow's exact pixels, CMYK \
included): converted to RGB as Pillow does, resized so that the \
longest side (upper_bound_*) or the shortest side (lower_bound_*) is --process-res pixels \
(OpenCV cubic when enlarging, area when shrinking), then made a multiple of 14 on both sides by \
a second resize to the nearest multiple (*_resize) or a centre crop (*_crop). E.g. 1920x1080 at \
the default 504 becomes 504x280. Images whose processed sizes differ are all centre-cropped to \
the smallest processed width and height (with a warning). EXIF orientation is ignored, as in the \
reference.

Bad inputs: an image file that cannot be read or decoded (missing, empty, corrupt, truncated, \
not PNG/JPEG) is skipped with a warning naming it, as long as at least one good image remains; \
the skipped files are also listed in depth_png_ranges.json (in a run split into chunks, later \
chunks are decoded during inference; a file found unreadable then is skipped and the other views \
are predicted again). Images refused by a flag's limit \
(over --max-pixels, too small for --process-res) stop the run instead, since changing the flag \
is the fix. Nothing is written until the inputs are read, and every file is written atomically \
(NAME.tmp, then renamed), so an interrupted run never leaves a half-written file."
    };
}

/// What the inference commands write, and the exit status.
macro_rules! outputs_help {
    () => {
        "All outputs are at the processed resolution; intrinsics are in processed-image pixels. \
Writes into --export-dir (alias --out):
  results.npz            depth, conf [S,H,W]; extrinsics [S,3,4] (world-to-camera [R|t],
                         OpenCV axes); intrinsics [S,3,3] (pixels); all float32.
                         Mono/metric models predict no conf or cameras: depth and sky
                         [S,H,W] (sky where >= 0.5; sky depth is filled with the 0.99
                         quantile of the rest). da3metric-large: metres = depth * focal / 300
                         (applied when --focal or known intrinsics give the focal)
  depth_NNNN.png         16-bit grayscale depth of view NNNN: the view's min depth -> 0,
                         its max -> 65535, linear in between
  depth_png_ranges.json  each view's min/max, to convert back:
                         depth = min + png / 65535 * (max - min); also each view's
                         input image and original size, the skipped inputs and whether
                         depth is in metres (is_metric)
  processed_NNNN.png     the 8-bit RGB image view NNNN was predicted from (after resizing
                         and cropping), pixel-aligned with depth_NNNN.png
                         With --export-feat-layers: feat_layer_<i> [S,H/14,W/14,D]
  exports/npz/results.npz, depth_vis/, scene.ply, scene.glb, colmap/, gs_ply/0000.ply:
                         see --export-format (gs_ply: --infer-gs)

Exit status: 0 on success (possibly with skipped inputs, reported on stderr), 1 on runtime \
errors (unreadable inputs or weights, failed inference, unwritable output), 2 on usage errors \
(invalid flags or flag combinations, missing weights file)."
    };
}
