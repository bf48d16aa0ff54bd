// Live updates: call ``fn`` every ``interval`` ms while the tab is visible, one
// call at a time (the next one is scheduled when the last one has finished).

export class Poller {
  constructor(fn, interval = 1000) {
    this.fn = fn;
    this.interval = interval;
    this.timer = null;
    this.busy = false;
    this.again = false;
    this.stopped = true;
    this.parked = false;
    this.onVisibility = () => {
      if (!document.hidden && this.parked) {
        this.parked = false;
        this.tick();
      }
    };
  }

  start() {
    this.stopped = false;
    document.addEventListener("visibilitychange", this.onVisibility);
    this.tick();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    document.removeEventListener("visibilitychange", this.onVisibility);
  }

  /** Poll now (after the request in flight, if any). */
  refresh() {
    if (this.stopped) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = null;
    this.tick();
  }

  async tick() {
    this.timer = null;
    if (this.stopped) return;
    if (document.hidden) {
      this.parked = true;
      return;
    }
    this.busy = true;
    try {
      await this.fn();
    } catch (error) {
      console.warn("poll failed:", error);
    } finally {
      this.busy = false;
    }
    if (this.stopped) return;
    if (this.again) {
      this.again = false;
      this.tick();
    } else if (this.interval > 0) {
      this.timer = setTimeout(() => this.tick(), this.interval);
    }
  }
}
