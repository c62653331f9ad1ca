import { useQuery } from '@tanstack/react-query';
import { Handle, Position, ReactFlow, Controls, type Node, type NodeProps } from '@xyflow/react';
import { useEffect, useMemo, useRef, useState, type FormEvent } from 'react';
import type { ReactFlowInstance } from '@xyflow/react';
import { ErrorBox, FileList, KeyValues, Loading, StateBadge } from '../components/common.js';
import { api, type IonEvent, type Trace } from '../lib/api.js';
import { shortId, time } from '../lib/format.js';
import { Link, navigate } from '../lib/router.js';
import {
  buildTraceGraph,
  FANOUT_PAGE,
  type TraceEdge,
  type TraceNode,
} from '../lib/trace-graph.js';

/**
 * The lineage of one correlation id as a graph: event → job → child events, with file and
 * insight counts on the nodes, refreshed live while the tree runs. A fan-out of more than a
 * few dozen events is one node with counts that opens on click. Only the nodes in view are
 * drawn, so a trace of thousands of events stays responsive.
 */

type Data = { node: TraceNode } & Record<string, unknown>;

function TraceNodeView(props: NodeProps<Node<Data>>) {
  const n = props.data.node;
  return (
    <div className={`flow-node trace-${n.kind}`}>
      <Handle type="target" position={Position.Left} />
      {n.kind === 'event' ? (
        <>
          <span className="kind">event</span> <strong>{n.event.type}</strong>
          <div className="muted">
            {n.event.files.length} file(s) · {n.event.metadata.length} meta · from {n.event.source}
          </div>
        </>
      ) : n.kind === 'job' ? (
        <>
          <span className="kind">job</span> <strong>{n.job.module}</strong>{' '}
          <StateBadge state={n.job.state} />
          <div className="muted">
            {n.job.outputs.length} output(s) · {n.insights.length} insight(s)
          </div>
        </>
      ) : (
        <>
          <strong>{n.shown > 0 ? `${n.count} more events` : `${n.count} events`}</strong> (
          {n.types.join(', ')})
          <div className="muted">
            {Object.entries(n.states)
              .map(([s, c]) => `${c} ${s}`)
              .join(' · ') || 'no jobs yet'}{' '}
            · click to open {Math.min(FANOUT_PAGE, n.count)}
          </div>
        </>
      )}
      <Handle type="source" position={Position.Right} />
    </div>
  );
}

const nodeTypes = { trace: TraceNodeView };

function Details(props: { node: TraceNode; trace: Trace }) {
  const n = props.node;
  if (n.kind === 'event')
    return (
      <section className="panel" aria-label="Selected event">
        <h2>Event {n.event.type}</h2>
        <p>
          <code>{n.event.eventId}</code> · {time(n.event.createdAt)} · from {n.event.source}
        </p>
        <KeyValues items={n.event.metadata} caption="Metadata" />
        <FileList files={n.event.files} caption="Files" />
      </section>
    );
  if (n.kind === 'job')
    return (
      <section className="panel" aria-label="Selected job">
        <h2>
          Job {n.job.module} <StateBadge state={n.job.state} />
        </h2>
        <p>
          <Link to={`/jobs/${encodeURIComponent(n.job.jobId)}`}>
            Open job {shortId(n.job.jobId)}
          </Link>{' '}
          · attempt {n.job.attempts}
        </p>
        {n.job.lastError === null ? null : <p className="wrap">{n.job.lastError}</p>}
        <KeyValues items={n.insights} caption="Insights" />
        <FileList files={n.job.outputs} caption="Output files" />
      </section>
    );
  return null;
}

function TraceGraphView(props: { trace: Trace }) {
  const [expanded, setExpanded] = useState<ReadonlyMap<string, number>>(new Map());
  const [selected, setSelected] = useState<string | null>(null);
  const graph = useMemo(() => buildTraceGraph(props.trace, expanded), [props.trace, expanded]);
  const nodes: Node<Data>[] = useMemo(
    () =>
      graph.nodes.map((n) => ({
        id: n.id,
        type: 'trace',
        position: { x: n.x, y: n.y },
        // Fixed sizes: React Flow then knows which nodes are in view before drawing any.
        width: 190,
        height: 58,
        data: { node: n },
        ariaLabel:
          n.kind === 'event'
            ? `event ${n.event.type}`
            : n.kind === 'job'
              ? `job ${n.job.module} ${n.job.state}`
              : `${n.count} events collapsed; press Enter to open ${Math.min(FANOUT_PAGE, n.count)}`,
      })),
    [graph],
  );
  const chosen = graph.nodes.find((n) => n.id === selected);
  const activate = (n: TraceNode) => {
    if (n.kind === 'group') {
      setExpanded(new Map(expanded).set(n.jobId, n.shown + FANOUT_PAGE));
      setFocus(n.id);
    } else setSelected(n.id);
  };
  // Keep the growing tree in view while it runs: only nodes in view are drawn.
  const flow = useRef<ReactFlowInstance<Node<Data>, TraceEdge> | null>(null);
  // After a click on a fan-out, frame the group and the first children it opened.
  const [focus, setFocus] = useState<string | null>(null);
  useEffect(() => {
    // Next frame: React Flow takes the new nodes into its store in its own effect first.
    const frame = requestAnimationFrame(() => {
      const group = focus === null ? undefined : graph.nodes.find((n) => n.id === focus);
      if (group?.kind === 'group') {
        // The group and the first children it opened, beside their job.
        void flow.current?.setCenter(group.x + 250, group.y + 260, { zoom: 0.7 });
      } else void flow.current?.fitView();
    });
    return () => cancelAnimationFrame(frame);
  }, [nodes.length, focus, graph]);
  return (
    <>
      <p className="muted" role="status">
        {props.trace.events.length} events · {props.trace.jobs.length} jobs ·{' '}
        {props.trace.insights.length} insights
        {graph.hidden > 0 ? ` · ${graph.hidden} events in collapsed groups` : ''}
      </p>
      <div
        className="graph trace-graph"
        role="figure"
        aria-label="Trace graph"
        data-nodes={nodes.length}
        onKeyDown={(e) => {
          // A focused node (Tab reaches them) opens with Enter, as a click does.
          if (e.key !== 'Enter') return;
          const id = (e.target as HTMLElement)
            .closest('.react-flow__node')
            ?.getAttribute('data-id');
          const n = graph.nodes.find((x) => x.id === id);
          if (n !== undefined) activate(n);
        }}
      >
        <ReactFlow
          nodes={nodes}
          edges={graph.edges}
          nodeTypes={nodeTypes}
          fitView
          minZoom={0.05}
          onlyRenderVisibleElements
          onInit={(instance) => {
            flow.current = instance;
          }}
          nodesDraggable={false}
          nodesConnectable={false}
          proOptions={{ hideAttribution: true }}
          onNodeClick={(_e, node) => activate(node.data.node)}
        >
          <Controls showInteractive={false} />
        </ReactFlow>
      </div>
      {chosen === undefined ? null : <Details node={chosen} trace={props.trace} />}
    </>
  );
}

function PickTrace() {
  const [value, setValue] = useState('');
  const recent = useQuery({
    queryKey: ['events', 'recent'],
    queryFn: () => api<{ events: IonEvent[] }>('/v1/events?limit=50'),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (value.trim() !== '') navigate(`/traces/${encodeURIComponent(value.trim())}`);
  };
  const roots = (recent.data?.events ?? []).filter((e) => e.parentEventId === null);
  return (
    <>
      <h1>Traces</h1>
      <form onSubmit={submit} className="filters">
        <label>
          Correlation id
          <input name="correlationId" value={value} onChange={(e) => setValue(e.target.value)} />
        </label>
        <button type="submit">Open trace</button>
      </form>
      <h2>Recent root events</h2>
      <ErrorBox error={recent.error} />
      <ul>
        {roots.map((e) => (
          <li key={e.eventId}>
            <Link to={`/traces/${encodeURIComponent(e.correlationId)}`}>{e.type}</Link> ·{' '}
            {time(e.createdAt)} · <code>{e.correlationId}</code>
          </li>
        ))}
      </ul>
    </>
  );
}

export function TracePage(props: { correlationId: string | undefined }) {
  const id = props.correlationId;
  const trace = useQuery({
    queryKey: ['trace', id],
    queryFn: () => api<Trace>(`/v1/traces/${encodeURIComponent(id!)}`),
    enabled: id !== undefined,
    retry: (count, err) => count < 10 && (err as { status?: number }).status === 404,
    retryDelay: 500,
  });
  if (id === undefined) return <PickTrace />;
  return (
    <>
      <h1>
        Trace <code>{id}</code>
      </h1>
      <ErrorBox error={trace.error} />
      {trace.data === undefined ? (
        <Loading what="the trace" />
      ) : (
        <TraceGraphView trace={trace.data} />
      )}
    </>
  );
}
