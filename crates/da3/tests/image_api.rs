//! The `image` convenience API (`Da3::predict_images`, `Prediction::depth_image`) against the
//! existing path (`preprocess` + `Da3::predict_with`) on the tiny model and a photo.

use std::path::PathBuf;

use da3::backends::Flex;
use da3::preprocess::{preprocess, ImageRef, Options, Pixels};
use da3::{Da3, Da3Config, PredictOptions};
use image::DynamicImage;

fn tiny() -> Da3<Flex> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let config = Da3Config::from_json(&std::fs::read_to_string(dir.join("tiny.config.json")).unwrap()).unwrap();
    Da3::from_file(config, &dir.join("tiny.weights.safetensors"), &Default::default()).unwrap()
}

#[test]
fn predict_images_equals_preprocess_then_predict() {
    let model = tiny();
    let photo = image::open(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/images/view_0.png")).unwrap();
    let rgb = photo.to_rgb8();
    let options = Options { process_res: 56, ..Options::default() };

    let via_image = model.predict_images_with(&[photo.clone()], &options, &PredictOptions::default()).unwrap();
    let img = ImageRef { pixels: Pixels::Rgb8(rgb.as_raw()), width: rgb.width() as usize, height: rgb.height() as usize };
    let pre = preprocess(&[img], None, &options).unwrap();
    let direct = model.predict_with(&pre.views, &PredictOptions::default()).unwrap();
    assert_eq!((via_image.width, via_image.height), (56, 42)); // 84x56 photo, longest side to 56
    assert_eq!(via_image.depth, direct.depth);
    assert_eq!(via_image.conf, direct.conf);

    // RGBA (alpha dropped, as Pillow's convert("RGB")) and 16-bit RGB (high byte) give the same.
    let rgba = DynamicImage::ImageRgba8(photo.to_rgba8());
    let rgb16 = DynamicImage::ImageRgb16(photo.to_rgb16());
    for other in [rgba, rgb16] {
        let p = model.predict_images_with(&[other], &options, &PredictOptions::default()).unwrap();
        assert_eq!(p.depth, direct.depth);
    }

    let depth = via_image.depth_image(0).unwrap();
    assert_eq!(depth.dimensions(), (56, 42));
    assert_eq!(depth.as_raw().as_slice(), direct.depth_of(0));
    assert_eq!(depth.get_pixel(3, 2).0[0], direct.depth_of(0)[2 * 56 + 3]);
    assert_eq!(via_image.conf_image(0).unwrap().as_raw().as_slice(), direct.conf_of(0));
    assert!(via_image.depth_image(1).is_none());
}
