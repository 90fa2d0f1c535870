// Unit tests of the lab notebook parser and expected-output matching (no lab, no root).
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  NotebookError, checkpoints, findNotebook, listNotebooks, loadNotebook, matchExpect, parseExpect, parseInfo, parseNotebook, repoRoot,
} from '../src/lab/notebook';
import { describeStep } from '../src/lab/runner';

const F = '```'; // a fence, so the notebooks below stay readable in this file

t.test('info strings: type, key=value, quoted values, flags', async (t) => {
  const a = parseInfo('sh host=client1 bg=echo wait="tun0 is up; (Ctrl-C)" timeout=5 expect-fail');
  t.equal(a.lang, 'sh');
  t.same([...a.opts], [['host', 'client1'], ['bg', 'echo'], ['wait', 'tun0 is up; (Ctrl-C)'], ['timeout', '5'], ['expect-fail', true]]);
  t.same([...parseInfo(`sh wait='say "hi"' x="a \\" b"`).opts], [['wait', 'say "hi"'], ['x', 'a " b']]);
  t.equal(parseInfo('').lang, '');
  t.equal(parseInfo('  text  ').opts.size, 0);
  t.throws(() => parseInfo('sh wait="open'), /unterminated quote/);
  t.throws(() => parseInfo('sh host=a host=b'), /"host" given twice/);
  t.throws(() => parseInfo('host=client1'), /must start with the block type/);
});

const SAMPLE = `# Lab 9: sample

${F}sh inline code${F} at the start of a line is not a fence.

## Setup

${F}sh
sudo npm run lab -- up
${F}

${F}text
host=client1 this is prose
${F}

## Step 1: run things

${F}sh host=client1
# on client1
ip route
${F}

Some prose between the command and its output.

**Checkpoint:** the default route is there
Hint: is the lab up?

${F}expect
default via 192.0.2.1 dev eth0
...
/src 192\\.0\\.2\\.11$/
${F}

${F}sh host=client3 bg=srv wait="listening on (\\d+)" timeout=7
# on client3, terminal 2 (leave it running)
node server.js
${F}

${F}sh host=inet expect-fail timeout=2.5
# on inet
ping -c 1 10.78.0.2
${F}

- **Checkpoint:** tun0 exists
  Hint: start tun-echo first

  ${F}check host=client1
  # on client1
  ip link show tun0
  ${F}

${F}sh stop=srv
# on client3, terminal 2: press Ctrl-C
${F}

${F}expect
/^closed/
${F}

**Student check:** your capture is there
Hint: run tcpdump with -w.
Hint: the file goes in ~/minivpn-labs.

${F}student-check
test -s ~/minivpn-labs/x.pcap
${F}

**Student check:** your route is there

${F}student-check host=client2 timeout=3
ip route get 10.9.0.10 | grep -q tun0
${F}

${F}\`markdown
${F}sh host=client1
# a fenced example inside a 4-backtick block is not run
${F}
${F}\`
`;

t.test('a notebook: steps, options, expect blocks, checkpoints, hints, sections', async (t) => {
  const nb = parseNotebook(SAMPLE, '/x/09-sample.md');
  t.equal(nb.number, 9);
  t.equal(nb.title, 'Lab 9: sample');
  t.same(nb.steps.map((s) => s.kind), ['run', 'bg', 'run', 'check', 'stop', 'student-check', 'student-check'], 'display-only blocks are skipped');
  t.same(nb.hosts, ['client1', 'client3', 'inet', 'client2']);
  t.equal(nb.clients, 3, 'clients = highest clientN used');

  const [route, srv, ping, check, stop, sc1, sc2] = nb.steps;
  t.equal(route.host, 'client1');
  t.equal(route.script, '# on client1\nip route');
  t.equal(route.section, 'Step 1: run things');
  t.equal(route.line, 17, 'line of the opening fence');
  t.equal(route.expect?.checkpoint, 'the default route is there', 'a title before an expect names it');
  t.equal(route.expect?.hint, 'is the lab up?');
  t.same(route.expect?.lines.map((l) => l.kind), ['literal', 'any', 'regex']);
  t.equal(route.expect?.lines[2].line, 30, 'expect lines know their notebook line');

  t.equal(srv.name, 'srv');
  t.equal(srv.wait?.source, 'listening on (\\d+)');
  t.equal(srv.timeoutSec, 7);
  t.notOk(srv.expect);

  t.equal(ping.expectFail, true);
  t.equal(ping.timeoutSec, 2.5);
  t.equal(ping.host, 'inet');

  t.equal(check.checkpoint, 'tun0 exists', 'a title inside a list item works');
  t.equal(check.hint, 'start tun-echo first');
  t.equal(check.script, '# on client1\nip link show tun0', 'the list indentation is stripped');

  t.equal(stop.name, 'srv');
  t.equal(stop.host, 'client3', 'a stop block runs where its command runs');
  t.same(stop.expect?.lines.map((l) => l.text), ['/^closed/']);

  t.equal(sc1.host, undefined, 'student-check without host');
  t.equal(sc1.checkpoint, 'your capture is there');
  t.equal(sc1.hint, 'run tcpdump with -w. the file goes in ~/minivpn-labs.', 'hint lines are joined');
  t.equal(sc2.host, 'client2');
  t.equal(sc2.timeoutSec, 3);
  t.equal(sc2.hint, undefined);

  t.same(checkpoints(nb), ['the default route is there', 'tun0 exists', 'your capture is there', 'your route is there']);
  t.equal(describeStep(route), 'client1$ ip route');
  t.equal(describeStep(srv), 'client3$ node server.js  [background "srv"]');
  t.equal(describeStep(stop), 'client3: stop "srv" (Ctrl-C)');
  t.match(describeStep(check), /^checkpoint "tun0 exists": client1\$ ip link show tun0$/);
});

t.test('notebook errors name the line and the reason', async (t) => {
  const bad = (body: string, re: RegExp, line?: number) => {
    try {
      parseNotebook(`# T\n\n${body}\n`, 'labs/07-bad.md');
      t.fail(`no error for: ${body}`);
    } catch (err) {
      t.type(err, NotebookError);
      t.match((err as Error).message, re);
      t.match((err as Error).message, /^labs\/07-bad\.md:\d+: /, 'file:line prefix');
      if (line !== undefined) t.equal((err as NotebookError).line, line);
    }
  };
  bad(`${F}sh host=client1\nip route\n${F}`, /first line of the block must be "# on client1"/, 3);
  bad(`${F}sh host=client1\n# on client2\nip route\n${F}`, /says "# on client2" but the block runs on client1/);
  bad(`${F}sh timeout=3\n# on client1\nls\n${F}`, /host=\.\.\. is required/);
  bad(`${F}sh host=client1 colour=red\n# on client1\nls\n${F}`, /option "colour" is not allowed on a sh block/);
  bad(`${F}sh host=Client_1\n# on client1\nls\n${F}`, /not a lab host name/);
  bad(`${F}sh host=client1 timeout=soon\n# on client1\nls\n${F}`, /timeout must be a number/);
  bad(`${F}sh host=client1 wait="x"\n# on client1\nls\n${F}`, /option "wait" is not allowed on a sh block/);
  bad(`${F}sh host=client1 expect-fail=yes\n# on client1\nls\n${F}`, /expect-fail takes no value/);
  bad(`${F}sh host=client1\n# on client1\n${F}\n${F}expect\n/a(/\n${F}`, /bad regular expression/);
  bad(`${F}sh host=client1 bg=x wait="a("\n# on client1\nls\n${F}`, /bad wait regex/);
  bad(`${F}expect\nhello\n${F}`, /expect block does not follow a command block/);
  bad(`${F}sh host=client1\n# on client1\nls\n${F}\n${F}expect\na\n${F}\n${F}expect\nb\n${F}`, /already has an expect block/);
  bad(`${F}sh host=client1\n# on client1\nls\n${F}\n${F}expect\n\n${F}`, /expect block is empty/);
  bad(`${F}check host=client1\n# on client1\ntrue\n${F}`, /needs a "\*\*Checkpoint:\*\* title" line/);
  bad('**Checkpoint:** orphan\n\nno block follows', /checkpoint "orphan" has no check, student-check or expect block/, 3);
  bad('**Checkpoint:** one\n**Checkpoint:** two\n', /checkpoint "one" has no check/);
  bad(`${F}sh stop=nope\n# press Ctrl-C\n${F}`, /no background command of that name is running/);
  bad(`${F}sh host=client1 bg=s\n# on client1\nsleep 9\n${F}\n${F}sh stop=s\nkill %1\n${F}`, /a stop block holds only # comments/);
  bad(`${F}sh host=client1 bg=s\n# on client1\nsleep 9\n${F}\n${F}sh host=client1 bg=s\n# on client1\nsleep 9\n${F}`, /"s" is already running/);
  bad(`${F}sh host=client1 bg=s\n# on client1\nsleep 9\n${F}\n${F}sh stop=s host=inet\n# Ctrl-C\n${F}`, /it runs on client1, not inet/);
  bad(`${F}sh host=client1 bg=a.b\n# on client1\nsleep 9\n${F}`, /bg name "a.b"/);
  bad(`${F}sh host=client1\n# on client1\nls\n`, /code block is never closed/, 3);
  bad(`${F}sh host=client1\n${F}`, /command block is empty/);
  bad(`${F}sh host=client9\n# on client9\nls\n${F}`, /at most 8 clients/);
  bad(`${F}sh host=client1 wait="x\n# on client1\n${F}`, /bad info string .*unterminated quote/);
  bad(`${F}sh lab-up\nsudo npm run lab -- up --clients 3\n${F}`, /lab-up: option "--clients" is not one a notebook may set \(allowed: --ipv6, --ipv6-only/, 3);
  bad(`${F}sh lab-up\nsudo npm run lab -- down\n${F}`, /a lab-up block holds exactly one "npm run lab -- up \.\.\." line/);
  bad(`${F}sh lab-up\nsudo npm run lab -- up\n${F}\n${F}sh lab-up\nsudo npm run lab -- up --ipv6\n${F}`, /a second lab-up block/);
  bad(`${F}sh lab-up host=client1\nsudo npm run lab -- up\n${F}`, /option "host" is not allowed on a lab-up block/);
});

t.test('lab-up: the lab options a notebook asks for, not a step', async (t) => {
  const nb = parseNotebook([`${F}sh lab-up`, 'sudo npm run lab -- up --ipv6   # the lab with IPv6', F,
    `${F}sh host=client2`, '# on client2', 'ip -6 addr', F].join('\n'), '/x/10-v6.md');
  t.same(nb.labFlags, ['--ipv6'], 'the options of its up line (a trailing comment is not one)');
  t.same(nb.steps.map((s) => s.kind), ['run'], 'the block itself is not run');
  t.equal(nb.clients, 2, 'clients still from the hosts');
  t.same(parseNotebook(`${F}sh lab-up\nsudo npm run lab -- up --ipv6-only\n${F}`, '/x/11.md').labFlags, ['--ipv6-only']);
  t.same(parseNotebook(`# T\n`, '/x/12.md').labFlags, [], 'none: the default lab');
});

t.test('a stopped background command can be started again under the same name', async (t) => {
  const nb = parseNotebook([
    `${F}sh host=client1 bg=s`, '# on client1', 'sleep 9', F,
    `${F}sh stop=s`, '# Ctrl-C', F,
    `${F}sh host=client1 bg=s`, '# on client1', 'sleep 9', F,
  ].join('\n'));
  t.same(nb.steps.map((s) => s.kind), ['bg', 'stop', 'bg']);
  t.equal(nb.number, null, 'no NN- in the name');
  t.equal(nb.title, 'notebook', 'no heading: the file name is the title');
});

t.test('expect: adjacent lines, "...", excerpts, regex lines', async (t) => {
  const out = [
    'PING 10.77.0.2 (10.77.0.2) 56(84) bytes of data.',
    '64 bytes from 10.77.0.2: icmp_seq=1 ttl=64 time=0.13 ms',
    '64 bytes from 10.77.0.2: icmp_seq=2 ttl=64 time=0.09 ms',
    '',
    '--- 10.77.0.2 ping statistics ---',
    '2 packets transmitted, 2 received, 0% packet loss, time 201ms   ',
    'rtt min/avg/max/mdev = 0.09/0.11/0.13/0.02 ms',
    '',
  ].join('\n');
  t.ok(matchExpect('PING 10.77.0.2 (10.77.0.2) 56(84) bytes of data.', out).ok, 'one line anywhere');
  t.ok(matchExpect('--- 10.77.0.2 ping statistics ---\n/^2 packets transmitted, 2 received/', out).ok, 'excerpt from the middle');
  t.ok(matchExpect('2 packets transmitted, 2 received, 0% packet loss, time 201ms', out).ok, 'trailing spaces ignored');
  t.ok(matchExpect('\n\nPING 10.77.0.2 (10.77.0.2) 56(84) bytes of data.\n...\n/packet loss/\n\n', out).ok, 'blank lines at the ends are layout');
  t.ok(matchExpect('/icmp_seq=2 /\n\n--- 10.77.0.2 ping statistics ---', out).ok, 'an empty expected line matches an empty output line');
  t.ok(matchExpect('/icmp_seq=1/\n...\n/icmp_seq=2/', out).ok, '"..." may stand for no lines');
  t.ok(matchExpect('...\n/rtt/\n...', out).ok);

  const notAdjacent = matchExpect('PING 10.77.0.2 (10.77.0.2) 56(84) bytes of data.\n--- 10.77.0.2 ping statistics ---', out);
  t.notOk(notAdjacent.ok, 'lines next to each other must be next to each other in the output');
  t.match(notAdjacent.message!, /expected line "--- 10\.77\.0\.2 ping statistics ---" \(notebook line 2\) not found right after output line 1 \("PING 10\.77/);
  t.equal(notAdjacent.missing?.text, '--- 10.77.0.2 ping statistics ---');

  const order = matchExpect('/icmp_seq=2/\n...\n/icmp_seq=1/', out);
  t.notOk(order.ok, 'order matters');
  t.match(order.message!, /"\/icmp_seq=1\/" \(notebook line 3\) not found after output line 3/);

  const absent = matchExpect('3 packets transmitted', out);
  t.notOk(absent.ok);
  t.match(absent.message!, /not found anywhere in the output/);

  t.notOk(matchExpect('PING', out).ok, 'a plain line must equal the whole output line');
  t.ok(matchExpect('/PING/', out).ok, 'a regex searches the line');
  t.notOk(matchExpect('/^bytes/', out).ok, 'anchors work');
  t.notOk(matchExpect('anything', '').ok, 'empty output matches nothing');
  t.ok(matchExpect('a\n...\nb', 'a\r\nx\r\nb\r\n').ok, 'CRLF output');

  // Greedy placement must not block a later run: "b" first matches at line 2, the run
  // "b c" only at lines 4-5.
  t.ok(matchExpect('a\n...\nb\nc', 'a\nb\nx\nb\nc').ok, 'a run is tried at every position');
  t.ok(matchExpect('x\n...\nx\n...\nx', 'x\ny\nx\nx').ok);
  t.notOk(matchExpect('x\n...\nx\n...\nx', 'x\ny\nx').ok, 'each run uses its own lines');
});

t.test('parseExpect: kinds, line numbers, bad regex', async (t) => {
  const lines = parseExpect('a  \n...\n  ...  \n/b+/\n/\n//\n/usr/bin/x', 10);
  t.same(lines.map((l) => [l.kind, l.text, l.line]), [
    ['literal', 'a', 10], ['any', '...', 11], ['any', '...', 12], ['regex', '/b+/', 13], ['literal', '/', 14], ['regex', '//', 15], ['literal', '/usr/bin/x', 16],
  ]);
  t.throws(() => parseExpect('ok\n/[/', 5), /line 6: bad regular expression \/\[\//);
});

t.test('finding notebooks: by number, by path, every NN-*.md in order', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nb-test-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const f of ['10-ten.md', '02-two.md', '01-one.md', 'README.md', '3-three.md', 'notes.txt']) fs.writeFileSync(path.join(dir, f), '# x\n');
  t.same(listNotebooks(dir).map((f) => path.basename(f)), ['01-one.md', '02-two.md', '3-three.md', '10-ten.md']);
  t.equal(path.basename(findNotebook('1', dir)), '01-one.md');
  t.equal(path.basename(findNotebook('03', dir)), '3-three.md');
  t.equal(findNotebook(path.join(dir, 'README.md'), dir), path.join(dir, 'README.md'), 'a path to a .md file');
  t.throws(() => findNotebook('4', dir), /no notebook for lab 4 .*04-\*\.md/);
  t.throws(() => findNotebook('two', dir), /neither a lab number nor an existing \.md file/);
  fs.writeFileSync(path.join(dir, '01-again.md'), '# y\n');
  t.throws(() => findNotebook('1', dir), /more than one notebook for lab 1/);
  t.same(listNotebooks(path.join(dir, 'none')), []);
});

t.test('every notebook in labs/ parses and has checkpoints and answers', async (t) => {
  const files = listNotebooks();
  t.ok(files.length >= 1, 'at least lab 1');
  for (const f of files) {
    const nb = loadNotebook(f);
    t.ok(nb.number !== null, `${path.basename(f)}: numbered`);
    t.ok(checkpoints(nb).length > 0, `${path.basename(f)}: has checkpoints`);
    t.ok(fs.existsSync(path.join(repoRoot(), 'labs', 'answers', path.basename(f))), `${path.basename(f)}: has answers/${path.basename(f)}`);
  }
});
