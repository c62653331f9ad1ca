import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import '@xyflow/react/dist/style.css';
import './styles.css';
import { App } from './app.js';

const client = new QueryClient({
  defaultOptions: {
    // Fresh data comes from the live stream, never from a poll loop or a focus refetch.
    queries: { staleTime: 30_000, refetchOnWindowFocus: false, retry: false },
  },
});

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <QueryClientProvider client={client}>
      <App />
    </QueryClientProvider>
  </StrictMode>,
);
