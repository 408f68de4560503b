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
 * Writes a YUV4MPEG2 (4:2:0) file of `seconds` at `fps` whose every pixel is `rgb`.
 * 640x480 by default, the size of Chromium's own fake camera: the encoder's bitrate
 * ceiling follows the frame size (1.7 Mbit/s at 640x480, 0.6 at 320x240), and the
 * bandwidth estimate is probed up to about twice what the encoder may use.
 */
export function writeSolidY4m(file, { rgb, width = 640, height = 480, fps = 20, seconds = 2 }) {
  const [y, u, v] = rgbToYuv(rgb);
  const cw = width / 2;
  const ch = height / 2;
  const frame = Buffer.alloc(6 + width * height + 2 * cw * ch);
  frame.write('FRAME\n', 0, 'ascii');
  frame.fill(y, 6, 6 + width * height);
  frame.fill(u, 6 + width * height, 6 + width * height + cw * ch);
  frame.fill(v, 6 + width * height + cw * ch);
  const header = Buffer.from(`YUV4MPEG2 W${width} H${height} F${fps}:1 Ip A1:1 C420jpeg\n`, 'ascii');
  const frames = Math.max(1, Math.round(seconds * fps));
  writeFileSync(file, Buffer.concat([header, ...Array(frames).fill(frame)]));
}
