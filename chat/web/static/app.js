// The chat page. It speaks the chat's own line protocol over a WebSocket:
// each message the page sends is a line the user typed, and each message it
// receives is one line from the server, exactly what `nc` would show.
//
// Text from the network is only ever put on the page with textContent, so a
// message such as <script>…</script> is shown as the characters it is.
//
// A server with history sends a newcomer the room's last lines first, between
// "[SYSTEM] Last N messages:" and "[SYSTEM] End of history.", each after the
// time it was said. The page shows them as a block apart from the live chat.
// On a reconnect it shows only the lines it has not shown yet: it keeps the
// last public lines it showed (`seen`), finds where the replay overlaps their
// end, and shows what comes after (`unseen`, the same rule as the terminal
// client's). Lines are matched by text alone, so an overlap counts only if it
// holds something a person said: join, leave and rename notices repeat word
// for word, across a server restart too, and must not hide what was said.
//
// Operators: a page removed by one (kicked or banned) gets a last line saying
// so before the server closes the connection, and the WebSocket of a banned
// address is refused with 403 and the reason (or, banned as it opened, gets
// one line and the close): the page does not reconnect then, and says why.
// The room's topic is shown in a bar at the top, from the line that follows
// each welcome and from the notices of its changes. In the online list an
// operator, "@Ann" in the answer to /users, has a badge.
//
// While the connection is down a banner says so and counts down to the next
// try; the online list stays, marked out of date, and what the user sends
// waits, shown as not sent yet, until the page is back in the room. Coming
// back is not a new join: a note says it, not a second welcome.
"use strict";

(() => {
  // ---------------------------------------------------------------------
  // Reading the server's lines (mirrors chat/core/messages.py).

  const NAME = "[A-Za-z0-9_-]+"; // the only characters a name may hold
  const SYSTEM_PREFIX = "[SYSTEM] ";
  const ERROR_PREFIX = "[ERROR] ";
  const KIND_PATTERNS = [
    ["private", new RegExp(`^\\[PM (?:from|to) (${NAME})\\] `)],
    ["action", new RegExp(`^\\* (${NAME}) `)],
    ["chat", new RegExp(`^(${NAME}): `)],
  ];
  const NOTICES = {
    welcome: new RegExp(`^\\[SYSTEM\\] Welcome, (${NAME})! `),
    joined: new RegExp(`^\\[SYSTEM\\] (${NAME}) joined the chat!$`),
    left: new RegExp(`^\\[SYSTEM\\] (${NAME}) left the chat\\.$`),
    renamed: new RegExp(`^\\[SYSTEM\\] (${NAME}) is now known as (${NAME})$`),
    online: /^\[SYSTEM\] Online \(\d+\): (.*)$/,
    // What operators do (mirrors chat/core/moderation.py).
    removed: new RegExp(`^\\[SYSTEM\\] (${NAME}) was removed by `),
    topic: /^\[SYSTEM\] Topic: (.+)$/, // right after a welcome, while the room has a topic
    topicSet: new RegExp(`^\\[SYSTEM\\] ${NAME} set the topic: (.+)$`),
    topicCleared: new RegExp(`^\\[SYSTEM\\] ${NAME} cleared the topic\\.$`),
  };
  // The last line an operator's kick or ban sends us, before the server closes the
  // connection, and the one line a banned address gets: reconnecting would be refused,
  // or would undo the kick. Names hold only letters, digits, _ and -, so no chat line
  // starts like these.
  const REMOVED = new RegExp(`^\\[SYSTEM\\] You were removed by (${NAME})`);
  const BANNED_SENTENCE = "You are banned from this chat"; // also the text of the 403 a WebSocket gets
  const BANNED = SYSTEM_PREFIX + BANNED_SENTENCE;
  const MAX_REFUSAL_CHARS = 2000; // of a refusal's text, at most, shown
  const NOW_OPERATOR = "[SYSTEM] You are now an operator."; // and how to see the operator commands
  const NO_LONGER_OPERATOR = "[SYSTEM] You are no longer an operator.";
  const OPERATOR_MARK = "@"; // before an operator's name in the answer to /users
  const PASSWORD_NEEDED = "[SYSTEM] This chat needs a password: send /pass PASSWORD first.";
  const PASSWORD_WRONG = "[ERROR] Wrong password.";
  const PASSWORD_TOO_MANY_TRIES = "[ERROR] Too many wrong passwords";
  const PASSWORD_ASKED = "This chat needs a password."; // the page's words for PASSWORD_NEEDED
  const GOODBYE = "[SYSTEM] Goodbye!";
  // The history block (mirrors chat/core/history.py).
  const HISTORY_START = /^\[SYSTEM\] Last (\d+) messages?:$/;
  const HISTORY_END = "[SYSTEM] End of history.";
  const HISTORY_STAMP = /^\[(\d\d:\d\d:\d\d)\] /;

  /** The kind of a line ("chat", "action", "private", "system", "error") and the name it is about. */
  function classify(line) {
    if (line.startsWith(SYSTEM_PREFIX)) return { kind: "system", name: null };
    if (line.startsWith(ERROR_PREFIX)) return { kind: "error", name: null };
    for (const [kind, pattern] of KIND_PATTERNS) {
      const match = pattern.exec(line);
      if (match) return { kind, name: match[1] };
    }
    return { kind: "system", name: null }; // a line from some other server
  }

  /** A replayed line's time ("14:02:01", or null if it has none) and the line as it was said. */
  function unstamped(line) {
    const match = HISTORY_STAMP.exec(line);
    return match ? { time: match[1], line: line.slice(match[0].length) } : { time: null, line };
  }

  /** The names a public line is about: its sender, or who joined, left or was renamed; null if not public. */
  function publicNames(line) {
    const { kind, name } = classify(line);
    if (kind === "chat" || kind === "action") return [name];
    let match;
    if ((match = NOTICES.joined.exec(line) || NOTICES.left.exec(line))) return [match[1]];
    if ((match = NOTICES.renamed.exec(line))) return [match[1], match[2]];
    return null; // private messages, replies, other notices: never in a history
  }

  /** Whether a line is something a person said: a chat line, an action, a private message to us
   * (not "[PM to NAME]", the copy of one we sent). */
  function fromSomeone(line) {
    const { kind } = classify(line);
    return kind === "chat" || kind === "action" || (kind === "private" && !line.startsWith("[PM to "));
  }

  /** Whether a line someone else said names `name` as a word, in any case: "@alice", "Alice,"
   * but not "Alicia". Names hold only letters, digits, _ and -, so those are what end a word. */
  function mentions(line, name) {
    if (!fromSomeone(line)) return false;
    const { name: sender } = classify(line);
    if (sender.toLowerCase() === name.toLowerCase()) return false;
    const text = line.slice(line.indexOf(sender) + sender.length);
    return new RegExp(`(^|[^A-Za-z0-9_-])${name}(?![A-Za-z0-9_-])`, "i").test(text);
  }

  /** True for a public line about one of `names` (a Set of names in lower case): one the user
   * said, or its own join, leave or rename. Names are compared regardless of case, as the server
   * keeps them unique regardless of case. */
  function isOwn(line, names) {
    const about = publicNames(line);
    return about !== null && about.some((name) => names.has(name.toLowerCase()));
  }

  // ---------------------------------------------------------------------
  // Reconnecting without showing a line twice.

  /** Where a replay (lines as said, oldest first) overlaps the end of `seen`:
   * the longest run of replayed lines ending at some point that equals the
   * last lines of `seen`, the latest such end winning a tie. Returns
   * { end, length }: the replayed lines from `end` on are new; length 0
   * means no overlap (more was missed than the history holds, or the
   * replay met `seen` only in notices). A run of notices only does not
   * count: "Cid left the chat." before a server restart and the same words
   * in the new history are not the same moment. */
  function overlap(seen, replayed) {
    let bestEnd = 0;
    let bestLength = 0;
    for (let end = replayed.length; end > 0; end--) {
      let k = 0;
      while (k < end && k < seen.length && replayed[end - 1 - k] === seen[seen.length - 1 - k]) k++;
      if (k > bestLength) {
        bestEnd = end;
        bestLength = k;
      }
    }
    // Every run is the end of `seen`, so each shorter one lies within the
    // longest: if the longest holds only notices, none holds a person's line.
    if (!seen.slice(seen.length - bestLength).some(isSaid)) return { end: 0, length: 0 };
    return { end: bestEnd, length: bestLength };
  }

  /** Whether a public line is something a person said (a chat line or an action), not a notice. */
  function isSaid(line) {
    return !line.startsWith(SYSTEM_PREFIX);
  }

  /** The replayed lines (as said, oldest first) that are not shown yet: those after the overlap
   * with `seen`, or all of them if there is none. Lines about `ownNames` (a Set) are left out on
   * both sides first: the user saw them as they were sent. The result is always a suffix of the
   * replay without the own lines, and all of it exactly when nothing overlapped. */
  function unseen(seen, replayed, ownNames = new Set()) {
    const names = new Set([...ownNames].map((name) => name.toLowerCase()));
    const theirs = (line) => !isOwn(line, names);
    const shownBefore = seen.filter(theirs);
    const candidates = replayed.filter(theirs);
    const { end, length } = overlap(shownBefore, candidates);
    return length ? candidates.slice(end) : candidates;
  }

  // ---------------------------------------------------------------------
  // Name colors: the terminal client's rule (chat/client/terminal.py), CRC-32
  // of the name in lower case modulo the number of colors, with a palette of
  // the page's own (style.css): enough colors that in a class of thirty most
  // names look different, each readable wherever a name is shown.

  const NAME_COLOR_COUNT = 30; // the .name-0 to .name-29 of style.css
  const CRC_TABLE = (() => {
    const table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
    return table;
  })();

  /** CRC-32 of some bytes, the same value as Python's zlib.crc32. */
  function crc32(bytes) {
    let crc = 0xffffffff;
    for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
    return (crc ^ 0xffffffff) >>> 0;
  }

  /** Which of the name colors (0 to NAME_COLOR_COUNT - 1) a name gets. */
  function nameColor(name) {
    // Names are ASCII, where Python's casefold() and toLowerCase() agree.
    return crc32(new TextEncoder().encode(name.toLowerCase())) % NAME_COLOR_COUNT;
  }

  // ---------------------------------------------------------------------
  // Building the elements of one line.

  function nameElement(name) {
    const span = document.createElement("span");
    span.className = `name name-${nameColor(name)}`;
    span.textContent = name;
    return span;
  }

  // Every line shows its time in one format, live or from the history: the
  // hours and minutes of the server's stamps ("14:02"), the seconds in its tooltip.
  function timeElement(date) {
    const time = document.createElement("time");
    time.dateTime = date.toISOString();
    const stamp = [date.getHours(), date.getMinutes(), date.getSeconds()].map((n) => String(n).padStart(2, "0"));
    time.textContent = stamp.slice(0, 2).join(":");
    time.title = stamp.join(":");
    return time;
  }

  /** The time a history line was said, as the server wrote it ("14:02:01": its own clock, its own time zone). */
  function stampElement(stamp) {
    const time = document.createElement("time");
    time.dateTime = stamp;
    time.title = `${stamp} on the server`;
    time.textContent = stamp.slice(0, 5);
    return time;
  }

  /** The element showing one line from the server (or one of ours, with own=true).
   * A history line comes with the `stamp` the server gave it ("14:02:01"). A line
   * that names `me` (the user's name) is marked as a mention. */
  function renderLine(line, { own = false, date = new Date(), stamp = null, me = null } = {}) {
    const { kind, name } = classify(line);
    const item = document.createElement("div");
    item.className = `line ${kind}`;
    if (own) item.classList.add("own");
    else if (me !== null && mentions(line, me)) item.classList.add("mention");
    if (stamp !== null) item.classList.add("history");
    item.append(stamp === null ? timeElement(date) : stampElement(stamp));
    const body = document.createElement("span");
    body.className = "body";
    if (kind === "system") {
      body.textContent = line.startsWith(SYSTEM_PREFIX) ? line.slice(SYSTEM_PREFIX.length) : line;
      if (NOTICES.joined.test(line) || NOTICES.left.test(line) || NOTICES.renamed.test(line)) {
        item.classList.add("quiet");
      }
    } else if (kind === "error") {
      const label = document.createElement("strong");
      label.textContent = "Error: ";
      body.append(label, line.slice(ERROR_PREFIX.length));
    } else {
      // "NAME: text", "* NAME text", "[PM from NAME] text": the name in its color.
      const start = line.indexOf(name);
      body.append(line.slice(0, start), nameElement(name), line.slice(start + name.length));
    }
    item.append(body);
    return item;
  }

  /** A note from the page itself (connection state), shown among the lines. */
  function renderNote(text) {
    const item = document.createElement("div");
    item.className = "line note";
    item.append(timeElement(new Date()));
    const body = document.createElement("span");
    body.className = "body";
    body.textContent = text;
    item.append(body);
    return item;
  }

  /** A rule across the conversation with a few words on it, where a history block starts or ends. */
  function renderDivider(text) {
    const divider = document.createElement("p");
    divider.className = "divider";
    divider.textContent = text;
    return divider;
  }

  /** One element holding a history block: a heading, the lines ({ time, line }, oldest first),
   * and, if `end` is given, a rule where the live chat resumes. Lines that name `me` are
   * mentions. The block is a live region that is off, so that a screen reader does not read
   * fifty lines out one by one when it arrives; the page announces how many there are instead. */
  function renderHistory(heading, entries, { end = null, me = null } = {}) {
    const block = document.createElement("div");
    block.className = "history-block";
    block.setAttribute("aria-live", "off");
    const lines = document.createElement("div");
    lines.className = "history-lines";
    lines.setAttribute("role", "group");
    lines.setAttribute("aria-label", heading);
    lines.append(...entries.map(({ time, line }) => renderLine(line, { stamp: time, me })));
    block.append(renderDivider(heading), lines);
    if (end !== null) block.append(renderDivider(end));
    return block;
  }

  // The page's pure helpers, for the browser console and the tests.
  window.chatPage = Object.freeze({
    NAME_COLOR_COUNT,
    classify,
    crc32,
    isOwn,
    mentions,
    nameColor,
    overlap,
    renderHistory,
    renderLine,
    retryDelay,
    unseen,
    unstamped,
  });

  // ---------------------------------------------------------------------
  // The page.

  const $ = (id) => document.getElementById(id);
  const statusLine = $("status");
  const messages = $("messages");
  const announcer = $("announcer");
  const jumpButton = $("jump");
  const usersToggle = $("users-toggle");
  const userList = $("user-list");
  const joinForm = $("join-form");
  const joinIntro = $("join-intro");
  const nameInput = $("name");
  const nameHint = $("name-hint");
  const passwordField = $("password-field");
  const passwordInput = $("password");
  const passwordHint = $("password-hint");
  const composer = $("composer");
  const messageInput = $("message");
  const topicBar = $("topic");
  const topicText = $("topic-text");
  const removedBox = $("removed");
  const removedText = $("removed-text");
  const reloadButton = $("reload-button");
  const offlineBanner = $("offline");
  const offlineWait = $("offline-wait");
  const reconnectButton = $("reconnect-button");

  const NAME_KEY = "chat.name"; // where the chosen name is remembered
  const VALID_NAME = new RegExp(`^${NAME}$`);
  const MAX_SHOWN_LINES = 2000;
  const MAX_HISTORY = 100;
  const RETRY_FIRST_MS = 1000;
  const RETRY_MAX_MS = 30000;
  const AT_BOTTOM_PX = 40; // this close to the bottom counts as reading the newest lines
  const MAX_SEEN = 200; // public lines remembered for matching a replay, as the terminal client does
  const NAME_HINT = nameHint.textContent;
  const TITLE = document.title; // "(3) " goes before it while lines arrive unseen
  // What the message box says when empty; on a phone it has about 250 pixels.
  const PLACEHOLDER = messageInput.placeholder;
  const PLACEHOLDER_OFFLINE = "Will send when back online";
  const COUNTDOWN_MS = 250; // how often the banner's seconds are redrawn: never a second behind for long
  const MAX_PENDING = 20; // lines typed while disconnected, kept to send on reconnecting

  let socket = null;
  let wantedName = ""; // the name asked for with /nick when joining
  let myName = null; // the name the server says we have, once joined
  let password = null; // kept in memory only, for reconnecting
  let joined = false;
  let leaving = false; // we sent /quit: do not reconnect
  let needPassword = null; // why the server refused us, if it did: do not reconnect
  let removal = null; // an operator's kick or ban, as the server told it (no "[SYSTEM] "): do not reconnect
  let probing = false; // asking the server whether a WebSocket that did not open was refused for a ban
  let retries = 0;
  let retryTimer = null;
  let retryAt = 0; // when retryTimer fires (Date.now() milliseconds), for the banner's countdown
  let reconnecting = false; // the connection is down and the page is getting it back: the banner shows
  let countdown = null; // the interval that redraws the banner's seconds while it shows
  let usersRepliesToHide = 0; // /users sent by the page itself: its reply updates the list only
  const online = new Map(); // lower-case name -> name
  const operators = new Set(); // the lower-case names in `online` that are operators
  const sent = []; // lines sent, oldest first, for Up and Down
  let historyIndex = 0;
  let draft = "";
  // What reconnecting needs to show each line once.
  const seen = []; // the last MAX_SEEN public lines shown, as said, oldest first; own lines left out
  const ownNames = new Set(); // every name the page has had since it was loaded, in lower case
  let welcomedBefore = false; // a history block from now on is a reconnect's, to match against `seen`
  let replay = null; // the lines of the history block arriving, or null outside one
  let welcomeShown = false; // the server's welcome is shown once per join the user asked for, not per reconnect
  const pending = []; // { text, item }: lines typed while disconnected, oldest first, sent once welcomed
  let unread = 0; // lines others said while the page was hidden

  function setStatus(text) {
    statusLine.textContent = text;
  }

  // -- while the connection is down ----------------------------------------

  /** Show or hide the banner across the top that says the connection is down and when the
   * next try is; the message box says then that what is typed goes once it is back. The
   * status line (a live region) says it once; the banner's countdown is not read out. */
  function showReconnecting(on) {
    reconnecting = on;
    offlineBanner.hidden = !on;
    messageInput.placeholder = on ? PLACEHOLDER_OFFLINE : PLACEHOLDER;
    clearInterval(countdown);
    countdown = on ? setInterval(drawCountdown, COUNTDOWN_MS) : null;
    drawCountdown();
  }

  function drawCountdown() {
    const seconds = Math.ceil((retryAt - Date.now()) / 1000);
    const waiting = retryTimer !== null && seconds > 0;
    offlineWait.textContent = waiting ? `Reconnecting in ${seconds} s…` : "Reconnecting…";
    reconnectButton.hidden = !waiting;
  }

  reconnectButton.addEventListener("click", () => reconnectNow());

  /** Mark the online list as out of date (the connection is down) or current (the server just sent it). */
  function showOnlineCurrent(current) {
    document.body.classList.toggle("online-stale", !current);
  }

  /** While the page is hidden, count the lines others say in its title: "(3) Chat". */
  function countUnread(line) {
    if (document.visibilityState !== "hidden" || !fromSomeone(line)) return;
    unread += 1;
    document.title = `(${unread}) ${TITLE}`;
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    unread = 0;
    document.title = TITLE;
    reconnectNow();
  });

  // -- the message list --------------------------------------------------

  function atBottom() {
    return messages.scrollHeight - messages.scrollTop - messages.clientHeight < AT_BOTTOM_PX;
  }

  function scrollToBottom() {
    messages.scrollTop = messages.scrollHeight;
    jumpButton.hidden = true;
  }

  /** Add a line, following the conversation unless the reader has scrolled up to read. */
  function append(item, { follow = false } = {}) {
    const wasAtBottom = atBottom();
    messages.append(item);
    while (messages.childElementCount > MAX_SHOWN_LINES) messages.firstElementChild.remove();
    if (wasAtBottom || follow) scrollToBottom();
    else jumpButton.hidden = false;
  }

  /** Have a screen reader say `text` once (the log itself does not read a history block). */
  function announce(text) {
    announcer.replaceChildren(text); // a new text node, so that the same words are said again
  }

  /** Remember a line shown, for matching the replay after a reconnect, unless the history never
   * holds it (not public, or a join or leave: the server keeps neither) or it is our own. */
  function see(line) {
    if (publicNames(line) === null || NOTICES.joined.test(line) || NOTICES.left.test(line) || isOwn(line, ownNames)) return;
    seen.push(line);
    if (seen.length > MAX_SEEN) seen.shift();
  }

  /** Show the history block that just ended: all of it on the first connect, else only what is new. */
  function showReplay() {
    const entries = replay.map(unstamped);
    replay = null;
    let shown = entries;
    let heading = "Earlier messages";
    let announcement = plural(entries.length, "earlier message");
    if (welcomedBefore) {
      const theirs = entries.filter(({ line }) => publicNames(line) !== null && !isOwn(line, ownNames));
      const count = unseen(seen, theirs.map(({ line }) => line), ownNames).length;
      shown = theirs.slice(theirs.length - count);
      heading = `${plural(count, "message")} while you were away`;
      if (count > 0 && count === theirs.length) heading += " (earlier ones may be missing)";
      announcement = heading;
    }
    for (const { line } of shown) see(line);
    if (shown.length === 0) return;
    // Before the first welcome the name is the one asked for; the server's may differ (taken).
    const me = myName ?? (wantedName || null);
    // One "Live" rule, after the first block: a reconnect's block ends where "Back in the chat" is said.
    append(renderHistory(heading, shown, { me, end: welcomedBefore ? null : "Live" }));
    announce(announcement);
  }

  function plural(count, noun) {
    return `${count} ${noun}${count === 1 ? "" : "s"}`;
  }

  messages.addEventListener("scroll", () => {
    if (atBottom()) jumpButton.hidden = true;
  });
  jumpButton.addEventListener("click", () => {
    scrollToBottom();
    messageInput.focus();
  });

  // -- who is online -----------------------------------------------------

  function renderUsers() {
    const names = [...online.values()].sort((a, b) => {
      const x = a.toLowerCase();
      const y = b.toLowerCase();
      return x < y ? -1 : x > y ? 1 : 0;
    });
    userList.replaceChildren(
      ...names.map((name) => {
        const item = document.createElement("li");
        const operator = operators.has(name.toLowerCase());
        if (name === myName) {
          const you = document.createElement("span");
          you.className = "you";
          you.append(nameElement(name), " (you)");
          if (operator) you.append(operatorBadge());
          item.append(you);
        } else {
          const button = document.createElement("button");
          button.type = "button";
          button.className = "user";
          button.append(nameElement(name));
          if (operator) button.append(" ", operatorBadge()); // a space in its name too: "Ann (operator)"
          // Named by what it shows ("Ann (operator)", as axe asks of a label), the action
          // told by the hint below the list.
          button.setAttribute("aria-describedby", "users-hint");
          button.addEventListener("click", () => startPrivateMessage(name));
          item.append(button);
        }
        return item;
      }),
    );
    for (const id of ["user-count", "users-heading-count"]) $(id).textContent = String(names.length);
  }

  /** The "op" shown after an operator's name; a screen reader says "operator". */
  function operatorBadge() {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.title = "Operator";
    const shown = document.createElement("span");
    shown.setAttribute("aria-hidden", "true");
    shown.textContent = "op";
    const said = document.createElement("span");
    said.className = "visually-hidden";
    said.textContent = " (operator)";
    badge.append(shown, said);
    return badge;
  }

  function startPrivateMessage(name) {
    messageInput.value = `/msg ${name} `;
    showUsers(false);
    messageInput.focus();
  }

  function showUsers(open) {
    document.body.classList.toggle("users-open", open);
    usersToggle.setAttribute("aria-expanded", String(open));
  }

  usersToggle.addEventListener("click", () => {
    showUsers(!document.body.classList.contains("users-open"));
  });

  // -- sharing: the page's address as a QR code, large, for a projector ------

  const shareButton = $("share-button");
  const shareDialog = $("share");
  const shareCode = $("share-code");
  const shareAddress = $("share-address");
  const shareClose = $("share-close");

  // The server draws the code of the address this page was opened at (its Host,
  // or what a trusted proxy says it was), which is this page's own address.
  shareButton.addEventListener("click", () => {
    shareAddress.textContent = new URL(".", location.href).href;
    if (!shareCode.getAttribute("src")) shareCode.src = "qr.svg";
    shareDialog.showModal(); // a modal dialog: Escape closes it, and focus stays inside
    shareClose.focus();
  });
  shareClose.addEventListener("click", () => shareDialog.close());
  shareDialog.addEventListener("close", () => shareButton.focus());

  /** Keep the online list current from a server line; true if the line was a reply to hide. */
  function followOnline(line) {
    let match;
    if ((match = NOTICES.online.exec(line))) {
      online.clear();
      operators.clear();
      for (const entry of match[1].split(", ")) {
        const name = entry.startsWith(OPERATOR_MARK) ? entry.slice(OPERATOR_MARK.length) : entry;
        if (!name) continue;
        online.set(name.toLowerCase(), name);
        if (name !== entry) operators.add(name.toLowerCase());
      }
      renderUsers();
      showOnlineCurrent(true);
      if (usersRepliesToHide > 0) {
        usersRepliesToHide -= 1;
        return true;
      }
    } else if ((match = NOTICES.joined.exec(line))) {
      online.set(match[1].toLowerCase(), match[1]);
      renderUsers();
    } else if ((match = NOTICES.left.exec(line) || NOTICES.removed.exec(line))) {
      online.delete(match[1].toLowerCase());
      operators.delete(match[1].toLowerCase());
      renderUsers();
    } else if (myName !== null && (line.startsWith(NOW_OPERATOR) || line === NO_LONGER_OPERATOR)) {
      if (line === NO_LONGER_OPERATOR) operators.delete(myName.toLowerCase());
      else operators.add(myName.toLowerCase());
      renderUsers();
    } else if ((match = NOTICES.renamed.exec(line))) {
      const [, before, after] = match;
      online.delete(before.toLowerCase());
      online.set(after.toLowerCase(), after);
      if (operators.delete(before.toLowerCase())) operators.add(after.toLowerCase());
      if (before === myName) {
        ownNames.add(after.toLowerCase());
        myName = after;
        wantedName = after;
        remember(after);
        setStatus(`Connected as ${myName}`);
      }
      renderUsers();
    }
    return false;
  }

  // -- the connection ----------------------------------------------------

  function socketUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/ws`;
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (reconnecting) drawCountdown();
    if (socket) return;
    needPassword = null;
    removal = null;
    leaving = false;
    replay = null;
    setStatus("Connecting…");
    const ws = new WebSocket(socketUrl());
    socket = ws;
    let opened = false;
    ws.addEventListener("open", () => {
      opened = true;
      setStatus("Joining…");
      if (password !== null) ws.send(`/pass ${password}`);
      if (wantedName) ws.send(`/nick ${wantedName}`);
    });
    ws.addEventListener("message", (event) => {
      for (const line of String(event.data).split("\n")) receive(line);
    });
    ws.addEventListener("close", () => {
      if (socket === ws) closed(opened);
    });
  }

  function receive(line) {
    if (replay !== null) {
      if (line === HISTORY_END) {
        showReplay();
        return;
      }
      if (HISTORY_STAMP.test(line)) {
        replay.push(line);
        if (replay.length > MAX_SHOWN_LINES) replay.shift();
        return;
      }
      showReplay(); // only replayed lines come between the markers: a server that did not end its block ended it here
    }
    if (!joined && HISTORY_START.test(line)) {
      replay = []; // a history comes just before the welcome, never after it
      return;
    }
    const welcome = NOTICES.welcome.exec(line);
    if (welcome) {
      welcomed(welcome[1], line);
      return;
    }
    let topic;
    if (REMOVED.test(line) || line.startsWith(BANNED)) {
      removal = line.slice(SYSTEM_PREFIX.length);
    } else if (joined && (topic = NOTICES.topic.exec(line) || NOTICES.topicSet.exec(line))) {
      setTopic(topic[1]);
    } else if (joined && NOTICES.topicCleared.test(line)) {
      setTopic("");
    } else if (!joined && (line === PASSWORD_NEEDED || line === PASSWORD_WRONG || line.startsWith(PASSWORD_TOO_MANY_TRIES))) {
      // The join form asks for the password in the page's own words once the
      // server closes the connection: the server's line tells a terminal user
      // to send /pass, which a browser user has no reason to. (After the
      // welcome, password lines answer /op: they say nothing about getting in.)
      if (line === PASSWORD_NEEDED) {
        needPassword = PASSWORD_ASKED;
      } else {
        needPassword = line === PASSWORD_WRONG ? "Wrong password. Try again." : "Too many wrong passwords. Wait a minute, then try again.";
        password = null;
      }
      return;
    } else if (line === GOODBYE) {
      leaving = true;
    }
    if (followOnline(line)) return;
    if (joined) countUnread(line);
    append(renderLine(line, { me: myName }));
    see(line);
  }

  /** The server's welcome: show it the first time, only a note after a reconnect; then ask who
   * is online and send what was typed while disconnected. */
  function welcomed(name, line) {
    const typingInJoinForm = joinForm.contains(document.activeElement);
    myName = name;
    ownNames.add(name.toLowerCase());
    // A history before the welcome may hold old topics; the current one, if any, comes right after it.
    setTopic("");
    welcomedBefore = true;
    joined = true;
    retries = 0;
    if (wantedName && name === wantedName) remember(name);
    setStatus(`Connected as ${name}`);
    showReconnecting(false);
    joinForm.hidden = true;
    composer.hidden = false;
    if (typingInJoinForm) messageInput.focus();
    append(welcomeShown ? renderNote(`Back in the chat as ${name}.`) : renderLine(line));
    welcomeShown = true;
    usersRepliesToHide += 1;
    socket.send("/users");
    for (const { text, item } of pending.splice(0)) {
      item.remove(); // shown again, as sent, at the bottom
      send(text);
    }
  }

  function closed(opened) {
    socket = null;
    replay = null; // a block cut short comes again, whole, with the next connection
    const wasJoined = joined;
    joined = false;
    usersRepliesToHide = 0;
    if (online.size > 0) showOnlineCurrent(false); // who was online, until the server says again
    if (removal) {
      showRemoval(removal);
    } else if (needPassword) {
      askForPassword(needPassword);
    } else if (leaving) {
      showReconnecting(false);
      welcomeShown = false; // joining again is a new join, welcomed as one
      setStatus("You left the chat.");
      append(renderNote("You left the chat."));
      showJoinForm("Join again?");
    } else {
      if (wasJoined) append(renderNote("Disconnected from the chat."));
      showReconnecting(true);
      if (opened) retryLater();
      else retryUnlessBanned();
    }
  }

  /** After a WebSocket that never opened: retry, unless the server refused it for a ban.
   * A banned address gets 403 with the reason as text, which a page cannot read from a
   * WebSocket's refusal: so it asks for the page itself, which gets the same answer. */
  async function retryUnlessBanned() {
    probing = true;
    let ban = null;
    try {
      const response = await fetch(location.href, { cache: "no-store" });
      if (response.status === 403) {
        const text = (await response.text()).slice(0, MAX_REFUSAL_CHARS);
        const start = text.indexOf(BANNED_SENTENCE);
        if (start >= 0) ban = text.slice(start).trim();
      }
    } catch {
      // The server is not there (the usual reason a WebSocket does not open): retry.
    }
    probing = false;
    if (socket !== null || retryTimer !== null) return; // connected meanwhile (the join form, a pageshow)
    if (ban) showRemoval(ban);
    else retryLater();
  }

  /** Say why the chat ended for good: who removed us and why, or the ban; reloading the page tries again. */
  function showRemoval(text) {
    showReconnecting(false);
    const by = REMOVED.exec(SYSTEM_PREFIX + text);
    setStatus(by ? `Removed from the chat by ${by[1]}` : "Banned from this chat");
    const hadFocus = composer.contains(document.activeElement) || joinForm.contains(document.activeElement);
    removedText.textContent = text;
    composer.hidden = true;
    joinForm.hidden = true;
    removedBox.hidden = false;
    if (hadFocus) reloadButton.focus();
  }

  reloadButton.addEventListener("click", () => location.reload());

  /** Show the room's topic at the top, or hide the bar for none (""). */
  function setTopic(text) {
    topicText.textContent = text;
    topicBar.hidden = text === "";
  }

  /** How long to wait before reconnecting, after `retries` failed tries: it doubles each
   * time up to RETRY_MAX_MS, less a random part of up to half, so that a room full of
   * pages does not come back all at once after a server restart. */
  function retryDelay(retries, random = Math.random) {
    const ceiling = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** retries);
    return Math.round(ceiling * (1 - random() / 2));
  }

  function retryLater() {
    const delay = retryDelay(retries);
    retries += 1;
    setStatus("Not connected"); // the banner counts the seconds down: a count here would stand still
    retryAt = Date.now() + delay;
    retryTimer = setTimeout(connect, delay);
    drawCountdown();
  }

  function reconnectNow() {
    if (retryTimer !== null) connect();
  }

  // A browser may keep a page the user left in its back/forward cache, frozen
  // but with its connection open, so that the user would seem to stay in the
  // chat. So the page leaves when hidden, and comes back when shown again.
  let resumeOnShow = false;
  window.addEventListener("pagehide", () => {
    resumeOnShow = socket !== null || retryTimer !== null || probing;
    clearTimeout(retryTimer);
    retryTimer = null;
    if (socket) {
      const ws = socket;
      socket = null; // its close event must not schedule a reconnect
      joined = false;
      if (online.size > 0) showOnlineCurrent(false);
      ws.close(1000, "page closed");
    }
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted && resumeOnShow) connect();
  });

  window.addEventListener("online", reconnectNow);

  // -- joining -------------------------------------------------------------

  function remember(name) {
    try {
      localStorage.setItem(NAME_KEY, name);
    } catch {
      // Storage may be disabled (private windows in some browsers): nothing to remember then.
    }
  }

  function remembered() {
    try {
      return localStorage.getItem(NAME_KEY) || "";
    } catch {
      return "";
    }
  }

  function showJoinForm(intro) {
    joinIntro.textContent = intro;
    nameInput.value = wantedName;
    composer.hidden = true;
    joinForm.hidden = false;
  }

  function askForPassword(reason) {
    showReconnecting(false);
    setStatus(reason);
    passwordField.hidden = false;
    passwordHint.textContent = reason;
    passwordInput.setAttribute("aria-invalid", String(reason !== PASSWORD_ASKED));
    showJoinForm("Enter the room password to join.");
    passwordInput.focus();
  }

  joinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = nameInput.value.trim();
    if (name && !VALID_NAME.test(name)) {
      nameInput.setAttribute("aria-invalid", "true");
      nameHint.textContent = "That name cannot be used: 1 to 20 letters, digits, _ or -.";
      nameInput.focus();
      return;
    }
    nameInput.removeAttribute("aria-invalid");
    nameHint.textContent = NAME_HINT;
    wantedName = name;
    if (!passwordField.hidden) password = passwordInput.value;
    passwordInput.value = "";
    connect();
  });

  // -- sending -------------------------------------------------------------

  /** The line the others see for what the user typed (a chat line or an action), or null for a command. */
  function ownLine(text) {
    if (text.startsWith("//")) return `${myName}: ${text.slice(1)}`;
    if (!text.startsWith("/")) return `${myName}: ${text}`;
    const [, command, rest] = /^\/(\S*)\s*(.*)$/s.exec(text);
    return command.toLowerCase() === "me" && rest.trim() ? `* ${myName} ${rest.trim()}` : null;
  }

  /** Send a line typed, and show it: the server relays chat lines and actions to everyone else only. */
  function send(text) {
    socket.send(text);
    if (/^\/quit\b/i.test(text.trim())) leaving = true;
    const shown = ownLine(text);
    if (shown !== null) append(renderLine(shown, { own: true }), { follow: true });
  }

  /** Keep a line typed while disconnected, shown as not sent yet, to send once welcomed again. */
  function keepForLater(text) {
    const shown = ownLine(text);
    const item = shown === null ? renderNote(text) : renderLine(shown, { own: true });
    item.classList.add("own", "pending");
    const mark = document.createElement("span");
    mark.className = "pending-mark";
    mark.textContent = "not sent yet";
    item.append(mark);
    pending.push({ text, item });
    append(item, { follow: true });
  }

  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = messageInput.value;
    if (!text.trim()) {
      messageInput.value = ""; // a blank line is not sent, as in the terminal client
      return;
    }
    if (joined && socket && socket.readyState === WebSocket.OPEN) {
      send(text);
    } else if (pending.length < MAX_PENDING) {
      keepForLater(text);
    } else {
      setStatus(`Not connected: ${MAX_PENDING} lines wait to be sent already; this one stays in the box.`);
      return;
    }
    if (sent[sent.length - 1] !== text) sent.push(text);
    if (sent.length > MAX_HISTORY) sent.shift();
    historyIndex = sent.length;
    draft = "";
    messageInput.value = "";
  });

  // Up and Down walk through the lines sent, like a terminal's history;
  // what was being typed comes back after the newest one.
  messageInput.addEventListener("keydown", (event) => {
    if (event.isComposing || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    if (event.key === "ArrowUp" && historyIndex > 0) {
      if (historyIndex === sent.length) draft = messageInput.value;
      historyIndex -= 1;
      messageInput.value = sent[historyIndex];
    } else if (event.key === "ArrowDown" && historyIndex < sent.length) {
      historyIndex += 1;
      messageInput.value = historyIndex === sent.length ? draft : sent[historyIndex];
    } else {
      return;
    }
    event.preventDefault();
    const end = messageInput.value.length;
    messageInput.setSelectionRange(end, end);
  });

  // A message is one line: pasted line breaks become spaces instead of
  // vanishing (which is what a one-line input does with them).
  messageInput.addEventListener("paste", (event) => {
    const text = event.clipboardData && event.clipboardData.getData("text");
    if (!text || !/[\r\n]/.test(text)) return;
    event.preventDefault();
    const { selectionStart, selectionEnd } = messageInput;
    messageInput.setRangeText(text.replace(/\r?\n|\r/g, " "), selectionStart, selectionEnd, "end");
  });

  // -- start -----------------------------------------------------------------

  wantedName = remembered();
  nameInput.value = wantedName;
  renderUsers();
  if (wantedName) {
    joinIntro.textContent = `Joining as ${wantedName}…`;
    connect(); // welcome back: join under the remembered name at once
  } else {
    setStatus("Not connected");
    showJoinForm("Pick a name to join the chat.");
  }
})();
