// The search area over the photo: drag to move, corners to resize, arrow keys to move, Shift+arrows to resize.
// The box is kept as fractions of the photo (x0, y0, x1, y1), which is what the search's bbox takes.
const MIN_SIDE = 0.05;
const STEP = 0.02;

export class CropBox {
  constructor(stage, box, onChange) {
    this.stage = stage;
    this.node = box;
    this.onChange = onChange;
    this.value = null;
    box.addEventListener("pointerdown", (event) => this.start(event));
    box.addEventListener("keydown", (event) => this.key(event));
  }

  set(value) {
    this.value = value;
    this.node.hidden = !value;
    if (!value) return;
    const [x0, y0, x1, y1] = value;
    Object.assign(this.node.style, {
      left: `${x0 * 100}%`, top: `${y0 * 100}%`, width: `${(x1 - x0) * 100}%`, height: `${(y1 - y0) * 100}%`,
    });
    this.node.setAttribute("aria-valuetext", value.map((v) => `${Math.round(v * 100)}%`).join(", "));
  }

  start(event) {
    event.preventDefault();
    const corner = event.target.classList.contains("handle") ? [...event.target.classList].find((c) => c.length === 2) : null;
    const rect = this.stage.getBoundingClientRect();
    const origin = [event.clientX, event.clientY];
    const from = [...this.value];
    this.node.setPointerCapture(event.pointerId);
    const move = (e) => {
      const dx = (e.clientX - origin[0]) / rect.width;
      const dy = (e.clientY - origin[1]) / rect.height;
      this.set(corner ? resized(from, corner, dx, dy) : moved(from, dx, dy));
    };
    const end = () => {
      this.node.removeEventListener("pointermove", move);
      this.node.removeEventListener("pointerup", end);
      this.node.removeEventListener("pointercancel", end);
      if (this.value.some((v, i) => v !== from[i])) this.onChange(this.value);
    };
    this.node.addEventListener("pointermove", move);
    this.node.addEventListener("pointerup", end);
    this.node.addEventListener("pointercancel", end);
  }

  key(event) {
    const arrows = { ArrowLeft: [-STEP, 0], ArrowRight: [STEP, 0], ArrowUp: [0, -STEP], ArrowDown: [0, STEP] };
    const delta = arrows[event.key];
    if (!delta || !this.value) return;
    event.preventDefault();
    this.set(event.shiftKey ? resized(this.value, "se", ...delta) : moved(this.value, ...delta));
    this.onChange(this.value);
  }
}

const clamp = (v, low, high) => Math.min(high, Math.max(low, v));

function moved([x0, y0, x1, y1], dx, dy) {
  const ddx = clamp(dx, -x0, 1 - x1);
  const ddy = clamp(dy, -y0, 1 - y1);
  return [x0 + ddx, y0 + ddy, x1 + ddx, y1 + ddy];
}

function resized([x0, y0, x1, y1], corner, dx, dy) {
  if (corner.includes("w")) x0 = clamp(x0 + dx, 0, x1 - MIN_SIDE);
  if (corner.includes("e")) x1 = clamp(x1 + dx, x0 + MIN_SIDE, 1);
  if (corner.includes("n")) y0 = clamp(y0 + dy, 0, y1 - MIN_SIDE);
  if (corner.includes("s")) y1 = clamp(y1 + dy, y0 + MIN_SIDE, 1);
  return [x0, y0, x1, y1];
}
