// The player starts at the moment (data-start) and pauses at its end (data-end); Media Fragments
// (#t=start,end in the src) do the same in browsers that support them: this is the fallback.
document.addEventListener("DOMContentLoaded", () => {
  const v = document.getElementById("player");
  if (!v) return;
  const start = parseFloat(v.dataset.start || "0");
  const end = v.dataset.end ? parseFloat(v.dataset.end) : NaN;
  const now = document.getElementById("now");
  const seek = () => { if (Math.abs(v.currentTime - start) > 0.25) v.currentTime = start; };
  if (v.readyState >= 1) seek(); else v.addEventListener("loadedmetadata", seek, { once: true });
  // where playback begins (data-arrived): the moment's start once the browser can play there
  const arrived = () => {
    if (v.dataset.arrived || v.seeking) return;
    v.dataset.arrived = v.currentTime.toFixed(3);
  };
  v.addEventListener("canplay", arrived);
  v.addEventListener("seeked", arrived);
  v.addEventListener("timeupdate", () => {
    if (now) now.textContent = v.currentTime.toFixed(2) + " s";
    if (!isNaN(end) && v.currentTime >= end && !v.paused) v.pause();
  });
  const replay = document.getElementById("replay");
  if (replay) replay.addEventListener("click", () => { v.currentTime = start; v.play(); });
});
