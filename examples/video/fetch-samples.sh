#!/usr/bin/env bash
# Fetches the example's sample media from Debian packages (real photos and a real video that
# no one here made up) and makes the slideshow clip. Nothing is committed: everything lands
# in the cache folder (default examples/video/.cache, git-ignored; override with
# ION_VIDEO_CACHE). Re-running is quick: whatever is already there is kept.
#
#   opencv-doc       /usr/share/doc/opencv-doc/examples/data/vtest.avi      real video, 768x576,
#                    10 fps, 79.5 s: pedestrians, a white van, a light-blue car
#                    .../licenseplate_motion.jpg                            rear of a silver car
#   python3-skimage  /usr/lib/python3/dist-packages/skimage/data/motorcycle_left.png
#                    a red motorcycle (Middlebury stereo set)
#
# Output in the cache folder:
#   vtest.avi, motorcycle_left.png, licenseplate_motion.jpg (copies of the originals)
#   slideshow.mp4   motorcycle 2 s, then the car 2 s (768x576, 25 fps, x264, ~100 KB)
#   vtest-10s.mp4   the first 10 s of vtest.avi (x264)
#   corrupt.mp4     bytes that are not a video (for the failure path)
#   empty.mp4       a valid MP4 with an audio track only: no frame to extract
#   blank.mp4       2 s of a plain grey picture: frames with no object in them
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${ION_VIDEO_CACHE:-$here/.cache}"
ffmpeg="${FFMPEG_PATH:-}"
if [ -z "$ffmpeg" ]; then
  ffmpeg="$(cd "$here" && node -e "process.stdout.write(require('@ffmpeg-installer/ffmpeg').path)" 2>/dev/null || true)"
fi
[ -n "$ffmpeg" ] || ffmpeg="$(command -v ffmpeg || true)"
if [ -z "$ffmpeg" ]; then
  echo "fetch-samples: no ffmpeg: run 'npm ci --prefix examples/video' first (or set FFMPEG_PATH)" >&2
  exit 1
fi
mkdir -p "$cache"
cd "$cache"

need=0
for f in vtest.avi licenseplate_motion.jpg motorcycle_left.png; do [ -s "$f" ] || need=1; done
if [ "$need" = 1 ]; then
  echo "fetch-samples: downloading opencv-doc and python3-skimage (.deb, ~117 MB, removed after) into $cache/debs"
  mkdir -p debs && cd debs
  ls opencv-doc_*.deb >/dev/null 2>&1 || apt-get download opencv-doc >/dev/null ||
    { apt-get update -qq && apt-get download opencv-doc >/dev/null; }
  ls python3-skimage_*.deb >/dev/null 2>&1 || apt-get download python3-skimage >/dev/null
  rm -rf x && mkdir x
  dpkg -x opencv-doc_*.deb x
  dpkg -x python3-skimage_*.deb x
  cd ..
  cp debs/x/usr/share/doc/opencv-doc/examples/data/vtest.avi .
  cp debs/x/usr/share/doc/opencv-doc/examples/data/licenseplate_motion.jpg .
  cp debs/x/usr/lib/python3/dist-packages/skimage/data/motorcycle_left.png .
  # Keep the licence texts beside the copies.
  cp debs/x/usr/share/doc/opencv-doc/copyright copyright.opencv-doc 2>/dev/null || true
  cp debs/x/usr/share/doc/python3-skimage/copyright copyright.python3-skimage 2>/dev/null || true
  rm -rf debs # the copies above are all that is needed
fi

ff() { "$ffmpeg" -hide_banner -loglevel error -y "$@"; }
if [ ! -s slideshow.mp4 ]; then
  fit='scale=768:576:force_original_aspect_ratio=decrease,pad=768:576:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=25,format=yuv420p'
  ff -loop 1 -t 2 -i motorcycle_left.png -loop 1 -t 2 -i licenseplate_motion.jpg \
    -filter_complex "[0]$fit[a];[1]$fit[b];[a][b]concat=n=2:v=1:a=0" -c:v libx264 slideshow.tmp.mp4
  mv slideshow.tmp.mp4 slideshow.mp4
fi
if [ ! -s vtest-10s.mp4 ]; then
  ff -i vtest.avi -t 10 -an -c:v libx264 -pix_fmt yuv420p vtest-10s.tmp.mp4
  mv vtest-10s.tmp.mp4 vtest-10s.mp4
fi
# (not `yes | head`: under pipefail, yes's SIGPIPE would end this script)
[ -s corrupt.mp4 ] || awk 'BEGIN { for (i = 0; i < 3000; i++) print "this is not a video" }' >corrupt.mp4
if [ ! -s empty.mp4 ]; then
  ff -f lavfi -i anullsrc=r=8000:cl=mono -t 1 -c:a aac empty.tmp.mp4
  mv empty.tmp.mp4 empty.mp4
fi
if [ ! -s blank.mp4 ]; then
  ff -f lavfi -i color=c=gray:s=768x576:r=25:d=2 -c:v libx264 -pix_fmt yuv420p blank.tmp.mp4
  mv blank.tmp.mp4 blank.mp4
fi
ls -l "$cache" | sed 1d | awk '{print "fetch-samples: " $5 "\t" $9}'
