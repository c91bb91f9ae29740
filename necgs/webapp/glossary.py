"""The page's words: its short header, what it is about, and the glossary of the numbers it shows.

Kept apart from the layout so that each text is written once and can be tested (the browser
test looks for every term of :data:`TERMS` on the page).
"""

from __future__ import annotations

#: The terms the glossary explains (and the tests look for).
TERMS = ("CD", "F1", "NC", "metric floor", "ratio vs PLY", "K", "TSDF-Def", "prior")

HEADER = (
    "# necgs: neural compression for sets of 3D meshes\n"
    "NeCGS beside the codecs people use, on your meshes or a built-in set. Pick the data and the decoder, "
    "press **Run**; click a row of the table or a point of a figure to look at that setting."
)

ABOUT = (
    "NeCGS turns each mesh into a TSDF-Def volume and trains one small quantized decoder for the whole set "
    "(an auto-decoder): the archive holds the decoder once and a small feature per shape, so a trained "
    "decoder pays off over many shapes, and a prior (a decoder pretrained on other shapes, shipped with "
    "necgs) is the choice for a few. Run one setting, or an ablation of one factor. Every run is "
    "reproducible with `necgs evaluate`.\n\n"
    "Jobs run one at a time: yours waits in a queue (its place shows in the status) and you may have one "
    "at a time; Cancel or closing the tab stops it. You see the shipped benchmark, the first-launch run and "
    "your own runs, no one else's. The runs of `necgs evaluate` on this machine show only when the server "
    "was started with `NECGS_SHOW_CLI_RUNS=1` (meant for a local page)."
)

GLOSSARY = (
    "- **CD** (Chamfer distance, lower is better): points are sampled on both surfaces (1e5 each, as in "
    "the benchmark), each point's distance to the other surface is averaged both ways; both shapes are "
    "scaled so that the original's longest side spans [-1, 1]. Shown x1e-3.\n"
    "- **F1** (F-score at distance 0.005, higher is better): the share of sampled points within 0.005 of "
    "the other surface, decoded-to-original and back, combined; 1 means every point is that close.\n"
    "- **NC** (normal consistency, higher is better): how well the surface normals agree with those of "
    "the nearest points of the other surface (1: everywhere).\n"
    "- **metric floor**: the original against itself, sampled twice: the best any codec can score, so "
    "values near it mean no visible loss.\n"
    "- **ratio vs PLY**: the meshes written as binary PLY (float32 vertices, int32 faces) over the "
    "compressed bytes, everything counted (for NeCGS: header, decoder and features).\n"
    "- **K**: grid samples per axis of a shape's volume (K = 64: 64 x 64 x 64 nodes).\n"
    "- **TSDF-Def**: the volume NeCGS compresses: a truncated signed distance to the surface at each grid "
    "node plus a small deformation that moves the node onto the surface, so a coarse grid keeps sharp "
    "detail; the decoder's volume becomes triangles by Deformable Marching Cubes.\n"
    "- **prior**: a decoder trained beforehand on other shapes; against it only each shape's feature is "
    "fitted and stored. **CD fitted** is the error of the volume before compression, **CD from coding** "
    "what the decoder and quantization add."
)
