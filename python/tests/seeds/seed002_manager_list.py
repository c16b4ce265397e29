# Seed 002_c52864b522f1332e.txt, example 3 (管理器): a Manager list of records, one child
# appends, another prints them.
# Changed: the import line is `import shmq as multiprocessing` (the seed's
# `import multiprocessing`; the rest uses the name multiprocessing unchanged); the
# over-indented print in insert_record (web formatting damage, a syntax error) is
# indented like the line above it. The test checks the four records printed in order.
import shmq as multiprocessing

def print_records(records):
   for record in records:
      print("Name: {0}\nScore: {1}\n".format(record[0], record[1]))

def insert_record(record, records):
   records.append(record)
   print("A New record is added\n")

if __name__ == '__main__':
   with multiprocessing.Manager() as manager:

      records = manager.list([('Computers', 1), ('Histoty', 5), ('Hindi',9)])
      new_record = ('English', 3)

      p1 = multiprocessing.Process(target = insert_record, args = (new_record, records))
      p2 = multiprocessing.Process(target = print_records, args = (records,))
      p1.start()
      p1.join()
      p2.start()
      p2.join()
