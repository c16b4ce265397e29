# Seed 002_c52864b522f1332e.txt, example 2 (管道): a child sends [42, None, 'hello'] on a Pipe.
# Changed: only the import line (names shmq). The test checks the printed list.
from shmq import Process, Pipe

def f(conn):
   conn.send([42, None, 'hello'])
   conn.close()

if __name__ == '__main__':
   parent_conn, child_conn = Pipe()
   p = Process(target = f, args = (child_conn,))
   p.start()
   print (parent_conn.recv())
   p.join()
