// 3D view of a prediction: the coloured point cloud and one wireframe frustum per camera
// (three.js, WebGL), orbit/zoom/pan with the mouse.
import * as THREE from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';

export class SceneViewer {
  /** Creates the viewer inside `container` (a sized element). */
  constructor(container) {
    this.container = container;
    // preserveDrawingBuffer: screenshots (and the browser test) read the canvas back.
    this.renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(window.devicePixelRatio);
    this.renderer.setClearColor(0x111318);
    container.appendChild(this.renderer.domElement);
    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(50, 1, 0.001, 1000);
    this.controls = new OrbitControls(this.camera, this.renderer.domElement);
    this.controls.addEventListener('change', () => this.render());
    this.group = null;
    new ResizeObserver(() => this.resize()).observe(container);
    this.resize();
  }

  resize() {
    const { clientWidth: w, clientHeight: h } = this.container;
    if (w === 0 || h === 0) return;
    this.renderer.setSize(w, h);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.render();
  }

  /**
   * Shows points (Float32Array [N*3]) with colours (Uint8Array [N*3]) and frustum segments
   * (Float32Array [C*8*2*3]) with colours (Uint8Array [C*3]), all in glTF axes (y up).
   */
  show({ positions, colors, frustums, frustumColors }) {
    if (this.group) {
      this.scene.remove(this.group);
      this.group.traverse((o) => { o.geometry?.dispose(); o.material?.dispose(); });
    }
    this.group = new THREE.Group();
    const pts = new THREE.BufferGeometry();
    pts.setAttribute('position', new THREE.BufferAttribute(positions, 3));
    pts.setAttribute('color', new THREE.BufferAttribute(colors, 3, true));
    pts.computeBoundingSphere();
    const radius = Math.max(pts.boundingSphere?.radius ?? 1, 1e-3);
    this.group.add(new THREE.Points(pts, new THREE.PointsMaterial({ size: radius / 150, vertexColors: true })));

    const cams = frustums.length / 48;
    if (cams > 0) {
      const lineColors = new Float32Array(frustums.length);
      for (let c = 0; c < cams; c++) {
        for (let v = 0; v < 16; v++) {
          for (let k = 0; k < 3; k++) lineColors[(c * 16 + v) * 3 + k] = frustumColors[c * 3 + k] / 255;
        }
      }
      const lines = new THREE.BufferGeometry();
      lines.setAttribute('position', new THREE.BufferAttribute(frustums, 3));
      lines.setAttribute('color', new THREE.BufferAttribute(lineColors, 3));
      this.group.add(new THREE.LineSegments(lines, new THREE.LineBasicMaterial({ vertexColors: true })));
    }
    this.scene.add(this.group);

    // Look from slightly behind and above the centre (the cloud is centred on its median).
    const center = pts.boundingSphere?.center ?? new THREE.Vector3();
    this.controls.target.copy(center);
    this.camera.position.set(center.x, center.y + radius * 0.3, center.z + radius * 1.8);
    this.camera.near = radius / 1000;
    this.camera.far = radius * 100;
    this.camera.updateProjectionMatrix();
    this.controls.update();
    this.render();
  }

  render() {
    this.renderer.render(this.scene, this.camera);
  }
}
