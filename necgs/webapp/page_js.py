"""The page's own script, run once on load: a little style, Enter committing a number box, and
the 3D viewers turning together.

Gradio's Model3D draws with a Babylon.js viewer per canvas and keeps its camera to itself. Every
Babylon engine registers in Babylon's ``EngineStore``, a module the page has already loaded (its
chunk's name carries a hash), so the script imports that same module, finds each viewer's
engine by its canvas and, while a visitor turns, pans or zooms one viewer (the one that got the
last pointer or wheel event), gives every other viewer its angles, its zoom and its pan at each of
its frames (each viewer keeps its own framing of its model); a viewer whose model loads anew takes
the view the visitor left. ``window.necgsCameras()`` reports each viewer's camera (for the browser test).
"""

from __future__ import annotations

#: Style the page adds: the advice line small and quiet; the progress display keeps its height
#: while the once-a-second tick is pending (Gradio drops an HTML's ``min_height`` then, and the
#: 20 px it gained and lost at every tick made the browser's scroll anchoring move the page).
PAGE_CSS = """
#advice, #advice p { font-size: 13px; color: #4b5563; margin: 0; }
#progress .html-container { min-height: 40px !important; }
"""

#: The script of ``demo.load(None, js=PAGE_JS)``.
PAGE_JS = (
    """
() => {
  const style = document.createElement('style');
  style.textContent = `"""
    + PAGE_CSS
    + """`;
  document.head.appendChild(style);

  // Enter in a number box commits it as leaving the box does: Gradio sends a slider's "input"
  // event (the visitor's change, which updates the decoder advice) on blur, not on Enter.
  document.addEventListener('keydown', e => {
    if (e.key === 'Enter' && e.target.matches && e.target.matches('input[type=number]')) e.target.blur();
  }, true);

  const viewerOf = canvas => canvas && canvas.closest('.necgs-viewer');
  // the viewer a visitor turns now (until a moment after the last pointer or wheel event: the
  // camera's inertia), and the view they left (kept by a viewer whose model loads anew)
  let lead = null, view = null, idle = null;
  const touched = e => {
    const viewer = viewerOf(e.target.closest && e.target.closest('canvas'));
    if (!viewer) {
      if (e.type === 'pointerdown' && e.target.closest && e.target.closest('.necgs-viewer button')) view = null;
      return;
    }
    lead = viewer;
    clearTimeout(idle);
    if (e.type !== 'pointerdown') idle = setTimeout(() => { lead = null; }, 1500);
  };
  const quiet = {capture: true, passive: true};
  ['pointerdown', 'pointerup', 'wheel'].forEach(t => document.addEventListener(t, touched, quiet));

  let store = null;
  const engineStore = async () => {
    if (store) return store;
    const url = performance.getEntriesByType('resource').map(e => e.name)
      .find(n => /\\/engineStore-[^/]+\\.js$/.test(n));
    if (!url) return null;
    const mod = await import(url);
    store = Object.values(mod).find(v => v && Array.isArray(v.Instances)) || null;
    return store;
  };
  const cameras = () => (store ? store.Instances : []).flatMap(engine => {
    const viewer = viewerOf(engine.getRenderingCanvas && engine.getRenderingCanvas());
    const scene = engine.scenes && engine.scenes[0];
    const camera = scene && scene.activeCamera;
    return viewer && camera && 'alpha' in camera ? [{viewer, camera}] : [];
  });
  // Each viewer frames its own model (its distance and target); a follower keeps its framing and
  // takes the lead's angles, its zoom as a share of the lead's framing distance, and its pan.
  const framed = camera => ({radius: camera.radius, target: camera.target.clone()});
  const near = (a, b) => Math.abs(a - b) < 1e-6;
  const apply = camera => {
    camera.alpha = view.alpha;
    camera.beta = view.beta;
    camera.radius = camera.__necgsFrame.radius * view.zoom;
    camera.target.copyFrom(camera.__necgsFrame.target.add(view.pan));
    camera.__necgsSet = [camera.alpha, camera.beta, camera.radius];
  };
  const follow = source => {
    view = {
      alpha: source.alpha,
      beta: source.beta,
      zoom: source.radius / source.__necgsFrame.radius,
      pan: source.target.subtract(source.__necgsFrame.target),
    };
    for (const {camera} of cameras()) if (camera !== source && camera.__necgsFrame) apply(camera);
  };
  // A camera that moved neither by a visitor nor by `apply` was framed anew (its model loaded):
  // it keeps that framing and takes the view the visitor left.
  const moved = camera => {
    if (lead && viewerOf(camera.getEngine().getRenderingCanvas()) === lead) return follow(camera);
    const set = camera.__necgsSet;
    if (set && near(set[0], camera.alpha) && near(set[1], camera.beta) && near(set[2], camera.radius)) return;
    camera.__necgsFrame = framed(camera);
    camera.__necgsSet = null;
    if (view) apply(camera);
  };
  const bind = async () => {
    await engineStore();
    for (const {camera} of cameras()) {
      if (camera.__necgsFrame) continue;
      camera.__necgsFrame = framed(camera);
      camera.onViewMatrixChangedObservable.add(() => moved(camera));
    }
  };
  setInterval(bind, 1000);
  window.necgsCameras = () => Object.fromEntries(cameras().map(({viewer, camera}) =>
    [viewer.id, [camera.alpha, camera.beta, camera.radius]]));
}
"""
)
