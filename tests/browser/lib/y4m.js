// y4m.js - solid-colour test videos Chromium plays as its fake camera
// (--use-file-for-fake-video-capture, which loops the file).
//
// Each side of flow.test.js films its own colour, so a page can tell whose video
// a decoded frame is by looking at it: the patient's camera is red, the doctor's blue.

import { writeFileSync } from 'node:fs';

/** RGB (0-255) to BT.601 limited-range Y'CbCr, what Chromium assumes for a Y4M file. */
export function rgbToYuv([r, g, b]) {
  const [R, G, B] = [r / 255, g / 255, b / 255];
  const clamp = (v) => Math.max(0, Math.min(255, Math.round(v)));
  return [
    clamp(16 + 65.481 * R + 128.553 * G + 24.966 * B),
    clamp(128 - 37.797 * R - 74.203 * G + 112.0 * B),
    clamp(128 + 112.0 * R - 93.786 * G - 18.214 * B),
  ];
}

/**
 * Writes a YUV4MPEG2 (4:2:0) file of `seconds` at `fps` whose every pixel is `rgb`,
 * its brightness shaken by up to `noise` levels at random, afresh each frame.
 * 640x480 by default, the size of Chromium's own fake camera: the encoder's bitrate
 * ceiling follows the frame size (1.7 Mbit/s at 640x480, 0.6 at 320x240).
 *
 * Why the noise: a flat picture needs almost no bits, so the sender is
 * "application-limited" and Chromium's congestion control does not raise its
 * estimate past what its start-up probes found; real cameras are never flat. The
 * noise keeps the encoder busy while the colour, averaged, still says whose it is.
 */
export function writeSolidY4m(file, { rgb, width = 640, height = 480, fps = 20, seconds = 2, noise = 0 }) {
  const [y, u, v] = rgbToYuv(rgb);
  const cw = width / 2;
  const ch = height / 2;
  const header = Buffer.from(`YUV4MPEG2 W${width} H${height} F${fps}:1 Ip A1:1 C420jpeg\n`, 'ascii');
  const frames = Math.max(1, Math.round(seconds * fps));
  let seed = 12345; // a fixed xorshift: the same file every run
  const random = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 4294967296;
  };
  const out = [header];
  for (let f = 0; f < frames; f++) {
    const frame = Buffer.alloc(6 + width * height + 2 * cw * ch);
    frame.write('FRAME\n', 0, 'ascii');
    frame.fill(y, 6, 6 + width * height);
    if (noise > 0) {
      for (let i = 6; i < 6 + width * height; i++) {
        frame[i] = Math.max(16, Math.min(235, y + Math.round((random() * 2 - 1) * noise)));
      }
    }
    frame.fill(u, 6 + width * height, 6 + width * height + cw * ch);
    frame.fill(v, 6 + width * height + cw * ch);
    out.push(frame);
    if (noise <= 0) {
      out.push(...Array(frames - 1).fill(frame));
      break;
    }
  }
  writeFileSync(file, Buffer.concat(out));
}
