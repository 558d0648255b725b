//! Failures name the path involved and leave no temporary file; successes leave none either.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use da3_export::colmap::{export_colmap, ColmapOptions, SourceImage};
use da3_export::{export_depth_vis, export_glb, export_ply, ExportError};

fn sources() -> Vec<SourceImage> {
    (0..2)
        .map(|i| SourceImage {
            name: format!("{i}.png"),
            width: 16,
            height: 12,
        })
        .collect()
}

/// Runs every exporter into `dir` and returns their errors.
fn export_all(dir: &Path) -> Vec<ExportError> {
    let (pred, images) = synthetic();
    vec![
        export_depth_vis(dir, &pred, &images).err(),
        export_ply(dir, &pred, &images, &Default::default()).err(),
        export_glb(dir, &pred, &images, &Default::default()).err(),
        export_colmap(dir, &pred, &images, &sources(), &ColmapOptions::default()).err(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[test]
fn all_formats_into_one_directory_leave_no_temporary_files() {
    let dir = scratch("errors-all");
    assert!(export_all(&dir).is_empty());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cameras.bin",
            "depth_vis",
            "images.bin",
            "points3D.bin",
            "scene.glb",
            "scene.ply"
        ]
    );
    assert_eq!(
        std::fs::read_dir(dir.join("depth_vis")).unwrap().count(),
        2 + 2 + 2 + 1
    );
    assert!(leftover_tmp_files(&dir).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_directory_that_cannot_be_created_is_named() {
    let dir = scratch("errors-file");
    let file = dir.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let target = file.join("out");
    let errors = export_all(&target);
    assert_eq!(errors.len(), 4);
    for e in errors {
        assert!(matches!(e, ExportError::Write { .. }), "{e:?}");
        assert!(e.to_string().contains(target.to_str().unwrap()), "{e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_read_only_directory_is_named() {
    let dir = scratch("errors-readonly");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let probe = dir.join("probe");
    if std::fs::write(&probe, b"x").is_ok() {
        // root ignores permission bits
        eprintln!(
            "NOTICE: {} is writable despite mode 0555 (running as root?); read-only check skipped",
            dir.display()
        );
        std::fs::remove_file(&probe).unwrap();
    } else {
        let (pred, images) = synthetic();
        let err = export_ply(&dir, &pred, &images, &Default::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains(dir.join("scene.ply").to_str().unwrap()),
            "{err}"
        );
        let err = export_depth_vis(&dir, &pred, &images).unwrap_err();
        assert!(
            err.to_string()
                .contains(dir.join("depth_vis").to_str().unwrap()),
            "{err}"
        );
        assert!(leftover_tmp_files(&dir).is_empty());
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_rename_is_named_and_cleaned_up() {
    // A directory where the file should go: the temporary file is written, the rename fails.
    let dir = scratch("errors-rename");
    for name in ["scene.ply", "scene.glb", "points3D.bin"] {
        std::fs::create_dir_all(dir.join(name).join("occupied")).unwrap();
    }
    let errors = export_all(&dir);
    assert_eq!(errors.len(), 3, "{errors:?}");
    for (e, name) in errors
        .iter()
        .zip(["scene.ply", "scene.glb", "points3D.bin"])
    {
        assert!(
            e.to_string().contains(dir.join(name).to_str().unwrap()),
            "{e}"
        );
    }
    assert!(leftover_tmp_files(&dir).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn inconsistent_inputs_are_rejected() {
    let dir = scratch("errors-input");
    let (pred, images) = synthetic();
    let err = export_ply(&dir, &pred, &images[..1], &Default::default()).unwrap_err();
    assert!(
        matches!(err, ExportError::Input(_)) && err.to_string().contains("1 images for 2"),
        "{err}"
    );
    let mut small = images.clone();
    small[1] = da3_export::ImageRgb8::filled(4, 4, [0, 0, 0]);
    assert!(export_glb(&dir, &pred, &small, &Default::default()).is_err());
    let mut short = pred.clone();
    short.depth.pop();
    assert!(export_depth_vis(&dir, &short, &images).is_err());
    let mut singular = pred.clone();
    singular.intrinsics[1] = [[0.0; 3]; 3];
    let err = export_ply(&dir, &singular, &images, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("intrinsics of view 1"), "{err}");
    assert!(da3_export::ImageRgb8::new(2, 2, vec![0; 11]).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
